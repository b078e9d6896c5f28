"""imgcomp study: matched-rate creation, the web app's safety (TestClient), the analysis, the pilot."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("sqlalchemy")

from fastapi.testclient import TestClient  # noqa: E402

from imgcomp.errors import ImgcompError  # noqa: E402
from imgcomp.study import db  # noqa: E402
from imgcomp.study.analyze import (  # noqa: E402
    analyze_votes,
    bradley_terry,
    wilson_interval,
    write_outputs,
)
from imgcomp.study.app import COOKIE, create_app  # noqa: E402
from imgcomp.study.create import create_study, match_rates  # noqa: E402
from imgcomp.study.definition import load_study  # noqa: E402
from synthetic_images import smooth_image  # noqa: E402

RATES = (1.0, 2.0, 20.0)  # 20 bpp is out of reach of both codecs on these images


def make_images(folder: Path, count: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for seed in range(1, count + 1):
        Image.fromarray(smooth_image(96, 128, seed=seed, noise=12)).save(folder / f"img{seed}.png")
    return folder


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("study")
    images = make_images(root / "images")
    create_study(images, ["jpeg420", "webp"], root / "study", rates=RATES, attention_checks=2)
    return root / "study"


def fresh_app(study_dir: Path, tmp_path: Path):
    return create_app(study_dir, f"sqlite:///{tmp_path / 'votes.sqlite'}")


def consented(app) -> TestClient:
    client = TestClient(app)
    response = client.post("/start", data={"consent": "yes"}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/rate"
    return client


def six_copies_at_once(app, secret: str, token: str) -> list[int]:
    """Status codes of six copies of one vote sent by six clients of one rater at the same instant."""
    codes, barrier = [], threading.Barrier(6)

    def send():
        c = TestClient(app)
        c.cookies.set(COOKIE, secret)
        barrier.wait()
        codes.append(c.post("/api/vote", json={"token": token, "choice": "left"}).status_code)

    threads = [threading.Thread(target=send) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return codes


# --- create -------------------------------------------------------------------------------------

def test_definition_pairs_only_within_tolerance(study_dir):
    study = load_study(study_dir)
    d = study.definition
    assert d["version"] == 1 and d["tolerance"] == 0.15 and d["rates"] == list(RATES)
    assert len(d["images"]) == 2 and len(d["attention"]) == 2
    for recon in d["reconstructions"].values():
        image = d["images"][recon["image"]]
        assert recon["bpp"] == pytest.approx(8 * recon["bytes"] / (image["width"] * image["height"]), abs=1e-6)
        assert abs(recon["bpp"] - recon["target_bpp"]) <= 0.15 * recon["target_bpp"]
        saved = np.array(Image.open(study_dir / "images" / f"{next(k for k, v in d['reconstructions'].items() if v is recon)}.png"))
        assert saved.shape == (96, 128, 3)
    assert {c["target_bpp"] for c in d["comparisons"]} == {1.0, 2.0}
    assert len(d["comparisons"]) == 4  # 2 images x 2 reachable rates x 1 pair
    assert {(u["codec"], u["target_bpp"]) for u in d["unmatched"]} == {("jpeg420", 20.0), ("webp", 20.0)}
    for c in d["comparisons"]:
        a, b = d["reconstructions"][c["a"]], d["reconstructions"][c["b"]]
        assert {a["codec"], b["codec"]} == {"jpeg420", "webp"} and a["image"] == b["image"] == c["image"]


def test_match_rates_is_closest_and_refines(study_dir):
    from imgcomp.codecs import get_codec

    image = smooth_image(96, 128, seed=1, noise=12)
    codec = get_codec("jpeg420")
    coarse = {s: len(codec.encode(image, s)) * 8 / (96 * 128) for s in (5, 50, 95)}
    matched = match_rates(codec, image, [1.0], settings=[5, 50, 95])[1.0]
    assert abs(matched.bpp - 1.0) <= min(abs(b - 1.0) for b in coarse.values())
    assert matched.setting not in coarse  # the bisection found a setting between the sweep's
    assert matched.bpp == pytest.approx(len(codec.encode(image, matched.setting)) * 8 / (96 * 128))


def test_create_refuses_bad_input(tmp_path):
    images = make_images(tmp_path / "in", 1)
    with pytest.raises(ImgcompError, match="at least two"):
        create_study(images, ["jpeg420"], tmp_path / "s")
    with pytest.raises(ImgcompError, match="no codec pair"):
        create_study(images, ["jpeg420", "webp"], tmp_path / "s", rates=[20.0])
    assert not (tmp_path / "s").exists() and not any(p.name.startswith(".") for p in tmp_path.iterdir())
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.txt").write_text("a user's file")
    with pytest.raises(ImgcompError, match="exists"):
        create_study(images, ["jpeg420", "webp"], tmp_path / "taken", rates=[1.0])
    with pytest.raises(ImgcompError, match="not a study folder"):
        create_study(images, ["jpeg420", "webp"], tmp_path / "taken", rates=[1.0], force=True)
    assert (tmp_path / "taken" / "mine.txt").exists()
    create_study(images, ["jpeg420", "webp"], tmp_path / "s", rates=[1.0])
    create_app(tmp_path / "s")  # votes.sqlite in the study folder
    with pytest.raises(ImgcompError, match="holds votes"):
        create_study(images, ["jpeg420", "webp"], tmp_path / "s", rates=[1.0], force=True)


# --- the app ------------------------------------------------------------------------------------

def test_consent_then_trials_and_one_vote_each(study_dir, tmp_path):
    app = fresh_app(study_dir, tmp_path)
    client = TestClient(app)
    assert "Consent" in client.get("/").text
    refused = client.post("/start", data={}, follow_redirects=False)
    assert refused.status_code == 400 and COOKIE not in refused.cookies
    client = consented(app)
    again = client.post("/start", data={"consent": "yes"}, follow_redirects=False)
    assert again.headers["location"] == "/rate" and db.rater_count(app.state.engine) == 1
    page = client.get("/rate")
    assert page.status_code == 200 and "Screen 1 of 6" in page.text  # 4 comparisons + 2 checks
    assert "default-src 'none'" in page.headers["content-security-policy"]
    trial = client.get("/api/trial").json()
    assert trial["token"] in page.text  # the page and the API show the same issued trial
    first = client.post("/api/vote", json={"token": trial["token"], "choice": "left", "response_ms": 1200})
    assert first.status_code == 200 and first.json()["answered"] == 1
    second = client.post("/api/vote", json={"token": trial["token"], "choice": "right"})
    assert second.status_code == 409
    rows = db.answered_trials(app.state.engine)
    assert len(rows) == 1 and rows[0]["choice"] == "left" and rows[0]["chosen_id"] == trial["left"].split("/")[-1]
    for _ in range(5):
        t = client.get("/api/trial").json()
        assert client.post("/api/vote", json={"token": t["token"], "choice": "right"}).status_code == 200
    assert client.get("/api/trial").json()["done"] is True
    assert client.get("/rate", follow_redirects=False).headers["location"] == "/done"
    assert "6 of 6" in client.get("/done").text


def test_votes_for_trials_not_issued_or_of_another_rater_are_refused(study_dir, tmp_path):
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    app = fresh_app(study_dir, tmp_path)
    alice, bob = consented(app), consented(app)
    current = alice.get("/api/trial").json()
    with Session(app.state.engine) as session:
        tokens = session.scalars(select(db.Trial.token).where(db.Trial.issued_at.is_(None))).all()
    not_issued = next(t for t in tokens if t != current["token"])
    assert alice.post("/api/vote", json={"token": not_issued, "choice": "left"}).status_code == 409
    assert bob.post("/api/vote", json={"token": current["token"], "choice": "left"}).status_code == 409
    assert alice.post("/api/vote", json={"token": "A" * 22, "choice": "left"}).status_code == 409
    assert db.answered_trials(app.state.engine) == []


@pytest.mark.parametrize("body", [
    {"token": "x", "choice": "left"},
    {"token": "A" * 22, "choice": "up"},
    {"token": "A" * 22, "choice": "left", "extra": 1},
    {"token": "A" * 22, "choice": "left", "response_ms": -5},
    {"token": "A" * 22, "choice": "left", "response_ms": "5"},
    {"token": ["A" * 22], "choice": "left"},
    {"choice": "left"},
])
def test_malformed_votes_are_422(study_dir, tmp_path, body):
    client = consented(fresh_app(study_dir, tmp_path))
    client.get("/api/trial")
    assert client.post("/api/vote", json=body).status_code == 422


def test_forged_requests(study_dir, tmp_path):
    app = fresh_app(study_dir, tmp_path)
    client = consented(app)
    token = client.get("/api/trial").json()["token"]
    assert client.post("/api/vote", content=json.dumps({"token": token, "choice": "left"}),
                       headers={"content-type": "text/plain"}).status_code == 415
    assert client.post("/api/vote", content=b"{not json", headers={"content-type": "application/json"}).status_code == 422
    assert client.post("/api/vote", content=b"x" * 10_000, headers={"content-type": "application/json"}).status_code == 413
    stranger = TestClient(app)
    assert stranger.post("/api/vote", json={"token": token, "choice": "left"}).status_code == 401
    stranger.cookies.set(COOKIE, "A" * 22)  # a well-formed secret no rater holds
    assert stranger.post("/api/vote", json={"token": token, "choice": "left"}).status_code == 401
    assert stranger.get("/rate", follow_redirects=False).headers["location"] == "/"
    assert db.answered_trials(app.state.engine) == []


def test_images_only_by_known_id(study_dir, tmp_path):
    client = TestClient(fresh_app(study_dir, tmp_path))
    study = load_study(study_dir)
    known = next(iter(study.definition["reconstructions"]))
    response = client.get(f"/img/{known}")
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert response.content == (study_dir / "images" / f"{known}.png").read_bytes()
    for bad in ["..%2Fstudy.json", "..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "0123456789abcdef",
                f"{known}.png", known.upper(), "study.json"]:
        assert client.get(f"/img/{bad}").status_code == 404, bad
    assert client.get("/img/../study.json").status_code == 404
    assert client.get("/static/../study.json").status_code == 404


def test_resume_after_closing_the_tab(study_dir, tmp_path):
    app = fresh_app(study_dir, tmp_path)
    client = consented(app)
    t1 = client.get("/api/trial").json()
    client.post("/api/vote", json={"token": t1["token"], "choice": "left"})
    t2 = client.get("/api/trial").json()
    secret = client.cookies[COOKIE]
    later = TestClient(app)
    later.cookies.set(COOKIE, secret)
    assert later.get("/", follow_redirects=False).headers["location"] == "/rate"
    resumed = later.get("/api/trial").json()
    assert resumed["token"] == t2["token"] and resumed["position"] == 1


def assert_six_copies_count_once(app) -> None:
    """Six copies of one vote sent at once: one is accepted, five refused, one answer stored."""
    client = consented(app)
    token = client.get("/api/trial").json()["token"]
    secret = client.cookies[COOKIE]
    assert sorted(six_copies_at_once(app, secret, token)) == [200] + [409] * 5
    assert len(db.answered_trials(app.state.engine)) == 1


def test_concurrent_double_submission_counts_once(study_dir, tmp_path):
    app = fresh_app(study_dir, tmp_path)
    assert_six_copies_count_once(app)


def test_database_belongs_to_one_study(study_dir, tmp_path):
    url = f"sqlite:///{tmp_path / 'votes.sqlite'}"
    create_app(study_dir, url)
    other = tmp_path / "other"
    create_study(make_images(tmp_path / "in2", 1), ["jpeg420", "webp"], other, rates=[1.0])
    with pytest.raises(ImgcompError, match="another study"):
        create_app(other, url)


# --- analysis -----------------------------------------------------------------------------------

def test_wilson_interval_known_values():
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.27753), abs=1e-5)
    assert wilson_interval(5, 10) == pytest.approx((0.23659, 0.76341), abs=1e-5)
    low, high = wilson_interval(81, 263)  # Wilson (1927) style example, checked against statsmodels' formula
    assert low == pytest.approx(0.2553, abs=1e-3) and high == pytest.approx(0.3662, abs=1e-3)


def test_bradley_terry_recovers_strengths():
    rng = np.random.default_rng(3)
    truth = np.log(np.array([1.0, 2.0, 4.0]))
    truth -= truth.mean()
    wins = np.zeros((3, 3))
    for i in range(3):
        for j in range(3):
            if i < j:
                p = np.exp(truth[i]) / (np.exp(truth[i]) + np.exp(truth[j]))
                w = rng.binomial(4000, p)
                wins[i, j], wins[j, i] = w, 4000 - w
    assert bradley_terry(wins, prior=0) == pytest.approx(truth, abs=0.05)
    never = bradley_terry(np.array([[0, 5.0], [0, 0]]))
    assert np.all(np.isfinite(never)) and never[0] > never[1]


def test_analysis_excludes_raters_failing_attention(study_dir, tmp_path):
    app = fresh_app(study_dir, tmp_path)
    study = app.state.study
    clients = [consented(app) for _ in range(3)]
    for index, client in enumerate(clients):  # rater 0 fails attention checks; all prefer webp
        while not (t := client.get("/api/trial").json())["done"]:
            ids = {side: t[side].split("/")[-1] for side in ("left", "right")}
            recon = study.definition["reconstructions"]
            if ids["left"] in recon:
                choice = "left" if recon[ids["left"]]["codec"] == "webp" else "right"
            else:
                originals = {a["original"] for a in study.definition["attention"]}
                good = "left" if ids["left"] in originals else "right"
                choice = good if index else ("right" if good == "left" else "left")
            assert client.post("/api/vote", json={"token": t["token"], "choice": choice}).status_code == 200
    result = analyze_votes(study, db.answered_trials(app.state.engine), bootstrap=50)
    assert result["raters"] == {**result["raters"], "total": 3, "kept": 2, "excluded": 1}
    assert result["votes"] == {"counted": 8, "excluded": 4}
    for row in result["pairs"]:
        if row["n"]:
            assert (row["codec_a"], row["wins_a"], row["wins_b"]) == ("jpeg420", 0, 4)
            assert row["ci_high"] < 0.5
    written = write_outputs(result, tmp_path / "analysis")
    with pytest.raises(ImgcompError, match="exists"):
        write_outputs(result, tmp_path / "analysis")
    assert write_outputs(result, tmp_path / "analysis", force=True) == written
    names = {p.name for p in written}
    assert {"pairs.csv", "bradley_terry.csv", "votes.csv", "summary.json", "preference.png"} <= names
    lines = (tmp_path / "analysis" / "votes.csv").read_text().splitlines()
    assert len(lines) == 1 + 12 and lines[0].startswith("rater,excluded")
    bt = {(r["target_bpp"], r["codec"]): r["log_strength"] for r in result["bradley_terry"]}
    assert result["anchor"] == "jpeg420" and bt[(1.0, "jpeg420")] == 0.0 and bt[(1.0, "webp")] > 0


# --- the pilot and the CLI ------------------------------------------------------------------------

def test_pilot_drives_the_app_over_http(study_dir, tmp_path):
    from imgcomp.study.pilot import run_pilot

    url = f"sqlite:///{tmp_path / 'pilot.sqlite'}"
    stats = run_pilot(study_dir, url, raters=4, inattentive=1, concurrency=3, metric="ms-ssim", noise=0.01)
    assert stats.errors == [] and stats.duplicates_refused == 4 and stats.duplicates_accepted == 0
    assert stats.resumes == 4 and stats.votes == 4 * 6
    study = load_study(study_dir)
    engine = db.open_db(url, study)
    assert len(db.answered_trials(engine)) == 24 and db.rater_count(engine) == 4


def test_cli_one_line_errors(tmp_path):
    result = subprocess.run([sys.executable, "-m", "imgcomp", "study", "analyze", str(tmp_path), "-o", str(tmp_path / "a")],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "not a study folder" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_shared_database_url(study_dir):
    """The app on another SQLAlchemy database (e.g. PostgreSQL): set IMGCOMP_TEST_DB_URL to an
    empty database to run it (its tables are dropped first)."""
    import os

    url = os.environ.get("IMGCOMP_TEST_DB_URL")
    if not url:
        pytest.skip("IMGCOMP_TEST_DB_URL not set (e.g. postgresql+psycopg://user:pw@localhost/study)")
    from sqlalchemy import create_engine

    engine = create_engine(url)
    db.Base.metadata.drop_all(engine)
    engine.dispose()
    app = create_app(study_dir, url)
    assert_six_copies_count_once(app)
