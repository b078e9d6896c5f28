"""The votes database (SQLAlchemy): raters, their trials, and the study they belong to.

Any SQLAlchemy URL works: ``sqlite:///STUDY/votes.sqlite`` (the default), or
``postgresql+psycopg://user:pass@host/db`` for a shared deployment. The server decides every trial:
when a rater consents, their whole plan (comparisons, attention checks, left/right order) is
written at once, and a trial is *issued* when it is shown. A vote names its trial by a random
token and is recorded by one conditional ``UPDATE ... WHERE answered_at IS NULL AND issued_at IS
NOT NULL``, which the database applies atomically: a second vote for the same trial, a vote for a
trial not yet issued, or one for another rater's trial changes no row and is refused.

Raters are anonymous: the browser holds a random secret (a cookie); the database stores only its
SHA-256 (the rater id), no address, no user agent.
"""

from __future__ import annotations

import hashlib
import random
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
    create_engine,
    event,
    func,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.pool import StaticPool

from imgcomp.errors import ImgcompError
from imgcomp.study.definition import Study

SECRET_BYTES = 16


class Base(DeclarativeBase):
    pass


class Meta(Base):
    """Key/value facts about the database: which study definition (SHA-256) it belongs to."""

    __tablename__ = "study_meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))


class Rater(Base):
    __tablename__ = "raters"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # SHA-256 of the cookie secret
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    trials: Mapped[int] = mapped_column(Integer)


class Trial(Base):
    __tablename__ = "trials"
    __table_args__ = (UniqueConstraint("rater_id", "position"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rater_id: Mapped[str] = mapped_column(ForeignKey("raters.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    token: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # "compare" or "attention"
    comparison_id: Mapped[str | None] = mapped_column(String(32), index=True, nullable=True)
    reference_id: Mapped[str] = mapped_column(String(32))
    left_id: Mapped[str] = mapped_column(String(32))
    right_id: Mapped[str] = mapped_column(String(32))
    correct_id: Mapped[str | None] = mapped_column(String(32), nullable=True)  # attention checks
    issued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    answered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    choice: Mapped[str | None] = mapped_column(String(8), nullable=True)  # "left" or "right"
    chosen_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    response_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    magnifier: Mapped[bool | None] = mapped_column(Boolean, nullable=True)


@dataclass(frozen=True)
class IssuedTrial:
    """What the page shows: a trial's token, its three images and the rater's progress."""

    token: str
    reference_id: str
    left_id: str
    right_id: str
    position: int
    total: int


def _now() -> datetime:
    return datetime.now(timezone.utc)


def rater_id_of(secret: str) -> str:
    """The database id of a rater: SHA-256 of the secret their browser holds."""
    return hashlib.sha256(secret.encode()).hexdigest()


def open_db(url: str, study: Study) -> Engine:
    """An engine on ``url`` with the tables created, bound to ``study`` (a database holding votes
    of another study definition is refused)."""
    try:
        if url.startswith("sqlite"):
            memory = url in ("sqlite://", "sqlite:///:memory:")
            engine = create_engine(
                url, connect_args={"check_same_thread": False, "timeout": 30},
                **({"poolclass": StaticPool} if memory else {}),
            )
            _sqlite_serialised_writes(engine)
        else:
            engine = create_engine(url, pool_pre_ping=True)
    except (ArgumentError, ImportError) as exc:
        raise ImgcompError(f"database URL {url!r}: {exc}") from None
    try:
        Base.metadata.create_all(engine)
        try:
            _bind_to_study(engine, study, url)
        except IntegrityError:  # another process (a second worker) bound it at the same moment
            _bind_to_study(engine, study, url)
    except OperationalError as exc:
        raise ImgcompError(f"database {url}: {exc.orig}") from None
    return engine


def _bind_to_study(engine: Engine, study: Study, url: str) -> None:
    with Session(engine) as session, session.begin():
        stored = session.get(Meta, "definition_sha256")
        if stored is None:
            session.add(Meta(key="definition_sha256", value=study.sha256))
        elif stored.value != study.sha256:
            raise ImgcompError(
                f"database {url}: holds votes of another study definition (study.json changed?); "
                "use another --db"
            )


def _sqlite_serialised_writes(engine: Engine) -> None:
    """SQLite: WAL, foreign keys, and ``BEGIN IMMEDIATE`` so concurrent writers queue on the
    busy timeout instead of failing when a read transaction turns into a write."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_rater(engine: Engine, study: Study, rng: random.Random | None = None) -> str:
    """A new anonymous rater and their plan; returns the secret for their cookie.

    Plan: ``session.trials_per_rater`` comparisons (all by default), taking first those with the
    fewest raters so far (ties at random), in random order, each with random left/right; plus
    ``session.attention_checks`` attention trials at random positions (the original itself
    against a heavily degraded copy of it, on random sides)."""
    rng = rng or random.Random(secrets.randbits(64))
    secret = secrets.token_urlsafe(SECRET_BYTES)
    rater_id = rater_id_of(secret)
    session_cfg = study.definition["session"]
    wanted = session_cfg.get("trials_per_rater") or len(study.comparisons)
    with Session(engine) as session, session.begin():
        counts = dict(session.execute(
            select(Trial.comparison_id, func.count()).where(Trial.kind == "compare").group_by(Trial.comparison_id)
        ).all())
        pool = list(study.comparisons.values())
        rng.shuffle(pool)
        pool.sort(key=lambda c: counts.get(c["id"], 0))
        chosen = pool[: min(wanted, len(pool))]
        rng.shuffle(chosen)
        items: list[dict[str, Any]] = []
        for c in chosen:
            left, right = (c["a"], c["b"]) if rng.random() < 0.5 else (c["b"], c["a"])
            items.append({"kind": "compare", "comparison_id": c["id"], "reference_id": c["image"],
                          "left_id": left, "right_id": right, "correct_id": None})
        checks = study.definition["attention"]
        for _ in range(int(session_cfg.get("attention_checks", 0)) if checks else 0):
            check = rng.choice(checks)
            pair = [check["original"], check["degraded"]]
            rng.shuffle(pair)
            items.insert(rng.randint(1, len(items)) if items else 0, {
                "kind": "attention", "comparison_id": None, "reference_id": check["image"],
                "left_id": pair[0], "right_id": pair[1], "correct_id": check["original"]})
        session.add(Rater(id=rater_id, created_at=_now(), trials=len(items)))
        session.flush()
        for position, item in enumerate(items):
            session.add(Trial(rater_id=rater_id, position=position,
                              token=secrets.token_urlsafe(SECRET_BYTES), **item))
    return secret


def rater_exists(engine: Engine, secret: str) -> bool:
    with Session(engine) as session:
        return session.get(Rater, rater_id_of(secret)) is not None


def issue_trial(engine: Engine, secret: str) -> IssuedTrial | None:
    """The rater's current trial (the first unanswered one), marked issued; None when done."""
    rater_id = rater_id_of(secret)
    with Session(engine) as session, session.begin():
        rater = session.get(Rater, rater_id)
        if rater is None:
            return None
        trial = session.scalars(
            select(Trial).where(Trial.rater_id == rater_id, Trial.answered_at.is_(None))
            .order_by(Trial.position).limit(1)
        ).first()
        if trial is None:
            return None
        if trial.issued_at is None:
            trial.issued_at = _now()
        return IssuedTrial(trial.token, trial.reference_id, trial.left_id, trial.right_id,
                           trial.position, rater.trials)


def progress(engine: Engine, secret: str) -> tuple[int, int]:
    """(answered, total) trials of a rater."""
    rater_id = rater_id_of(secret)
    with Session(engine) as session:
        rater = session.get(Rater, rater_id)
        if rater is None:
            return 0, 0
        answered = session.scalar(
            select(func.count()).select_from(Trial)
            .where(Trial.rater_id == rater_id, Trial.answered_at.is_not(None))
        )
        return int(answered or 0), rater.trials


def record_vote(engine: Engine, secret: str, token: str, choice: str,
                response_ms: int | None = None, magnifier: bool | None = None) -> bool:
    """Record a rater's choice ("left" or "right") for an issued, unanswered trial of theirs.
    Returns False (nothing changed) for anything else: a second vote, a trial not yet issued,
    another rater's or an unknown token."""
    if choice not in ("left", "right"):
        raise ImgcompError(f"choice must be 'left' or 'right', got {choice!r}")
    rater_id = rater_id_of(secret)
    chosen = Trial.left_id if choice == "left" else Trial.right_id
    with Session(engine) as session, session.begin():
        result = session.execute(
            update(Trial)
            .where(Trial.rater_id == rater_id, Trial.token == token,
                   Trial.answered_at.is_(None), Trial.issued_at.is_not(None))
            .values(answered_at=_now(), choice=choice, chosen_id=chosen,
                    response_ms=response_ms, magnifier=magnifier)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1


def answered_trials(engine: Engine) -> list[dict[str, Any]]:
    """Every answered trial, as plain dicts (for the analysis)."""
    with Session(engine) as session:
        rows = session.scalars(select(Trial).where(Trial.answered_at.is_not(None))
                               .order_by(Trial.rater_id, Trial.position)).all()
        return [{
            "rater": t.rater_id[:16], "position": t.position, "kind": t.kind,
            "comparison_id": t.comparison_id, "reference_id": t.reference_id,
            "left_id": t.left_id, "right_id": t.right_id, "correct_id": t.correct_id,
            "choice": t.choice, "chosen_id": t.chosen_id, "response_ms": t.response_ms,
            "magnifier": t.magnifier,
            "answered_at": t.answered_at.isoformat() if t.answered_at else None,
        } for t in rows]


def rater_count(engine: Engine) -> int:
    with Session(engine) as session:
        return int(session.scalar(select(func.count()).select_from(Rater)) or 0)
