"""``imgcomp study serve``: the 2AFC rating web app (FastAPI, server-rendered pages, plain JS).

Pages: ``/`` instructions and consent, ``/rate`` one trial (the original in the middle, two
images left and right, a magnifier synchronised over the three, keyboard shortcuts, progress),
``/done``. JSON: ``GET /api/trial`` (the current trial; what the pilot's simulated raters read) and
``POST /api/vote``. Images: ``/img/<id>``, by the opaque ids of the study definition only.

The server decides everything: the plan is made at consent (:func:`imgcomp.study.db.create_rater`),
a trial is issued when shown, and a vote must carry the token of the rater's issued, unanswered
trial (else 409). A rater is a random secret in an HttpOnly, SameSite=Lax cookie, so closing the
tab and coming back resumes at the first unanswered trial.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Literal

from fastapi import FastAPI, Form, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from imgcomp.study import db
from imgcomp.study.definition import Study, load_study

COOKIE = "imgcomp_rater"
COOKIE_MAX_AGE = 90 * 24 * 3600
MAX_BODY = 4096
_SECRET = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; script-src 'self'; "
                               "style-src 'self'; form-action 'self'; frame-ancestors 'none'; "
                               "base-uri 'none'; connect-src 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


class Vote(BaseModel):
    """The body of ``POST /api/vote``; anything else (extra fields, wrong types) is a 422."""

    model_config = ConfigDict(extra="forbid", strict=True)
    token: str = Field(pattern=r"^[A-Za-z0-9_-]{16,64}$")
    choice: Literal["left", "right"]
    response_ms: int | None = Field(default=None, ge=0, le=7 * 24 * 3600 * 1000)
    magnifier: bool | None = None


def _package_dir(name: str) -> Path:
    return Path(str(resources.files("imgcomp.study") / name))


def create_app(study: str | Path | Study, db_url: str | None = None, *,
               secure_cookies: bool = False) -> FastAPI:
    """The web app for one study folder, its votes in ``db_url`` (default: the study's
    ``votes.sqlite``). ``secure_cookies``: send the rater cookie over HTTPS only (behind TLS)."""
    study = study if isinstance(study, Study) else load_study(study)
    engine = db.open_db(db_url or study.default_db_url(), study)
    app = FastAPI(title="imgcomp 2AFC study", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.study, app.state.engine = study, engine
    templates = Jinja2Templates(directory=str(_package_dir("templates")))
    app.mount("/static", StaticFiles(directory=str(_package_dir("static"))), name="static")

    @app.middleware("http")
    async def _guard(request: Request, call_next):
        if request.method == "POST":
            length = request.headers.get("content-length")
            if length is None or not length.isdigit() or int(length) > MAX_BODY:
                return JSONResponse({"detail": "request body missing or too large"}, status_code=413)
        response = await call_next(request)
        response.headers.update(_SECURITY_HEADERS)
        return response

    def secret_of(request: Request) -> str | None:
        secret = request.cookies.get(COOKIE)
        if secret and _SECRET.match(secret) and db.rater_exists(engine, secret):
            return secret
        return None

    @app.get("/")
    def index(request: Request) -> Response:
        if secret_of(request):
            return RedirectResponse("/rate", status_code=303)
        return templates.TemplateResponse(request, "index.html", {
            "title": study.title, "trials": _planned_trials(study)})

    @app.post("/start")
    def start(request: Request, consent: str = Form("")) -> Response:
        if secret_of(request):  # a second "Start" (or the back button) resumes; no second rater
            return RedirectResponse("/rate", status_code=303)
        if consent != "yes":
            return templates.TemplateResponse(request, "index.html", {
                "title": study.title, "trials": _planned_trials(study),
                "error": "Please tick the consent box to take part."}, status_code=400)
        secret = db.create_rater(engine, study)
        response = RedirectResponse("/rate", status_code=303)
        response.set_cookie(COOKIE, secret, max_age=COOKIE_MAX_AGE, httponly=True,
                            samesite="lax", secure=secure_cookies, path="/")
        return response

    @app.get("/rate")
    def rate(request: Request) -> Response:
        secret = secret_of(request)
        if secret is None:
            return RedirectResponse("/", status_code=303)
        trial = db.issue_trial(engine, secret)
        if trial is None:
            return RedirectResponse("/done", status_code=303)
        return templates.TemplateResponse(request, "rate.html", {
            "title": study.title, "trial": trial, "number": trial.position + 1},
            headers={"Cache-Control": "no-store"})

    @app.get("/done")
    def done(request: Request) -> Response:
        secret = secret_of(request)
        answered, total = db.progress(engine, secret) if secret else (0, 0)
        return templates.TemplateResponse(request, "done.html", {
            "title": study.title, "answered": answered, "total": total, "rater": secret is not None})

    @app.get("/api/trial")
    def api_trial(request: Request) -> dict:
        secret = secret_of(request)
        if secret is None:
            raise HTTPException(401, "no rater: start at / and consent first")
        trial = db.issue_trial(engine, secret)
        if trial is None:
            answered, total = db.progress(engine, secret)
            return {"done": True, "answered": answered, "total": total}
        return {"done": False, "token": trial.token, "reference": f"/img/{trial.reference_id}",
                "left": f"/img/{trial.left_id}", "right": f"/img/{trial.right_id}",
                "position": trial.position, "total": trial.total}

    @app.post("/api/vote")
    async def api_vote(request: Request) -> dict:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            raise HTTPException(415, "send the vote as application/json")
        try:
            vote = Vote.model_validate_json(await request.body())
        except ValueError:
            raise HTTPException(422, "malformed vote: expected {token, choice: left|right}") from None
        return await run_in_threadpool(_vote, request, vote)

    def _vote(request: Request, vote: Vote) -> dict:
        secret = secret_of(request)
        if secret is None:
            raise HTTPException(401, "no rater: start at / and consent first")
        if not db.record_vote(engine, secret, vote.token, vote.choice, vote.response_ms, vote.magnifier):
            raise HTTPException(409, "this trial is not open for a vote (already answered, or not issued to you)")
        answered, total = db.progress(engine, secret)
        return {"ok": True, "answered": answered, "total": total,
                "next": "/done" if answered >= total else "/rate"}

    @app.get("/img/{image_id}")
    def image(image_id: str) -> Response:
        path = study.image_path(image_id)
        if path is None:
            raise HTTPException(404, "no such image")
        return FileResponse(path, media_type="image/png",
                            headers={"Cache-Control": "private, max-age=86400, immutable"})

    return app


def _planned_trials(study: Study) -> int:
    session = study.definition["session"]
    compare = min(session.get("trials_per_rater") or len(study.comparisons), len(study.comparisons))
    return compare + (int(session.get("attention_checks", 0)) if study.definition["attention"] else 0)


def app_from_env() -> FastAPI:
    """The app for ``uvicorn --factory imgcomp.study.app:app_from_env`` (several workers): the study
    folder from ``IMGCOMP_STUDY``, the database URL from ``IMGCOMP_STUDY_DB`` (default: the study's
    SQLite file), HTTPS-only cookies if ``IMGCOMP_STUDY_SECURE_COOKIES`` is 1."""
    import os

    from imgcomp.errors import ImgcompError

    folder = os.environ.get("IMGCOMP_STUDY")
    if not folder:
        raise ImgcompError("set IMGCOMP_STUDY to the study folder")
    return create_app(folder, os.environ.get("IMGCOMP_STUDY_DB") or None,
                      secure_cookies=os.environ.get("IMGCOMP_STUDY_SECURE_COOKIES") == "1")
