"""CLI commands ``study create | serve | analyze | pilot``: a 2AFC study of codecs (Patel et al.
2019, sec. 4.3) with your own images and raters. Needs the ``study`` extra."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from imgcomp.errors import ImgcompError

study_app = typer.Typer(
    name="study", no_args_is_help=True,
    help="2AFC study: reconstructions at matched rates (create), the rating web app (serve), "
         "the analysis (analyze), simulated raters (pilot).")


def register(app: typer.Typer) -> None:
    """Add the ``study`` sub-app to the main app."""
    app.add_typer(study_app, name="study")


def _need_extra() -> None:
    try:
        import fastapi  # noqa: F401
        import sqlalchemy  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise ImgcompError(f"imgcomp study needs the 'study' extra: pip install 'imgcomp[study]' ({exc.name} is missing)") from None


def _existing_sqlite(url: str) -> None:
    """Analysis reads votes: an SQLite file that does not exist is an error, not a new database."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ImgcompError(f"database URL {url!r}: {exc}") from None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        if not Path(parsed.database).is_file():
            raise ImgcompError(f"{parsed.database}: no votes database there (serve the study first, or give --db)")


def _floats(text: str, what: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ImgcompError(f"{what} {text!r}: expected comma-separated numbers, e.g. 0.23,0.37,0.67,1.0") from None


@study_app.command("create")
def create_command(
    image_dir: Path = typer.Argument(..., help="Folder of images (PNG, JPEG, ...; not searched recursively)."),
    codecs: str = typer.Option(..., "--codecs", "-c", help="Comma-separated codec names, at least two (imgcomp codecs lists them)."),
    out: Path = typer.Option(..., "--out", "-o", help="The study folder to create."),
    rates: str = typer.Option("0.23,0.37,0.67,1.0", "--rates", help="Target bits per pixel (Patel et al.'s by default)."),
    tolerance: float = typer.Option(0.15, "--tolerance", help="A reconstruction counts at a target if |bpp - target| <= tolerance x target."),
    settings: Optional[list[str]] = typer.Option(None, "--settings", help="A codec's sweep to search, e.g. --settings jpeg420=5,20,50,90 (repeatable)."),
    model: Optional[list[Path]] = typer.Option(None, "--model", "-m", help="An exported model folder to include as codec SYSTEM/NAME (repeatable)."),
    trials: Optional[int] = typer.Option(None, "--trials-per-rater", help="Comparisons per rater (default: all)."),
    attention: int = typer.Option(3, "--attention-checks", help="Attention trials per rater (the original against a heavily degraded copy)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing study folder."),
) -> None:
    """Reconstructions of every image at matched rates and the study definition (study.json)."""
    _need_extra()
    from imgcomp.codecs import register_model_codec
    from imgcomp.eval.runner import parse_settings_option
    from imgcomp.study.create import create_study

    extra = [register_model_codec(folder) for folder in model or []]
    names = [n.strip() for n in codecs.split(",") if n.strip()] + [n for n in extra if n not in codecs.split(",")]
    definition = create_study(
        image_dir, names, out, rates=_floats(rates, "--rates"), tolerance=tolerance,
        settings=parse_settings_option(settings or []), trials_per_rater=trials,
        attention_checks=attention, force=force,
        progress=lambda message: typer.echo(f"  {message}", err=True))
    typer.echo(f"{out}: {len(definition['images'])} images, {len(definition['comparisons'])} comparisons, "
               f"{len(definition['unmatched'])} (image, codec, rate) outside the tolerance "
               f"(+-{100 * tolerance:g}%)")
    for target in definition["rates"]:
        count = sum(c["target_bpp"] == target for c in definition["comparisons"])
        typer.echo(f"  {target:g} bpp: {count} comparisons")


@study_app.command("serve")
def serve_command(
    study: Path = typer.Argument(..., help="A study folder (imgcomp study create)."),
    db: Optional[str] = typer.Option(None, "--db", help="SQLAlchemy URL of the votes database (default: sqlite:///STUDY/votes.sqlite), e.g. postgresql+psycopg://user:pw@host/study."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8000, "--port", min=1, max=65535),
    secure_cookies: bool = typer.Option(False, "--secure-cookies", help="Send the rater cookie over HTTPS only (behind a TLS proxy)."),
) -> None:
    """Serve the rating web app (instructions, consent, trials) until Ctrl-C."""
    _need_extra()
    import uvicorn

    from imgcomp.study.app import create_app

    app = create_app(study, db, secure_cookies=secure_cookies)
    typer.echo(f"serving {study} on http://{host}:{port}/ (Ctrl-C to stop)")
    uvicorn.run(app, host=host, port=port, log_level="info", proxy_headers=False)


@study_app.command("analyze")
def analyze_command(
    study: Path = typer.Argument(..., help="A study folder."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for summary.json, the CSV files and the plots."),
    db: Optional[str] = typer.Option(None, "--db", help="SQLAlchemy URL of the votes (default: the study's votes.sqlite)."),
    min_attention: float = typer.Option(1.0, "--min-attention", help="Share of attention checks a rater must pass to be counted."),
    focus: Optional[str] = typer.Option(None, "--focus", help="The codec whose preference the plot shows (default: the first codec)."),
    anchor: Optional[str] = typer.Option(None, "--anchor", help="The codec at 0 on the Bradley-Terry scale (default: jpeg420 if it is compared at every rate)."),
    bootstrap: int = typer.Option(1000, "--bootstrap", min=0, help="Bootstrap resamples (over raters) for the Bradley-Terry intervals."),
    json_output: bool = typer.Option(False, "--json", help="Print summary.json instead of the table."),
    force: bool = typer.Option(False, "--force", help="Replace the analysis files already in OUT."),
) -> None:
    """Preferences per codec pair and rate (Wilson 95% CI), Bradley-Terry scales, plots, CSV."""
    _need_extra()
    from imgcomp.study import analyze, db as votes_db
    from imgcomp.study.definition import load_study

    loaded = load_study(study)
    url = db or loaded.default_db_url()
    _existing_sqlite(url)
    engine = votes_db.open_db(url, loaded)
    trials = votes_db.answered_trials(engine)
    if not trials:
        raise ImgcompError(f"{url}: no votes yet")
    result = analyze.analyze_votes(loaded, trials,
                                   min_attention=analyze.check_min_attention(min_attention),
                                   bootstrap=bootstrap, focus=focus, anchor=anchor)
    labels = analyze.labels_of(loaded)
    written = analyze.write_outputs(result, out, labels, force=force)
    if json_output:
        typer.echo(json.dumps({k: v for k, v in result.items() if k != "vote_rows"}, indent=1))
        return
    for line in analyze.format_table(result, labels):
        typer.echo(line)
    typer.echo("wrote " + ", ".join(str(p) for p in written))


@study_app.command("pilot")
def pilot_command(
    study: Path = typer.Argument(..., help="A study folder."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for pilot.json and the analysis."),
    db: Optional[str] = typer.Option(None, "--db", help="Votes database of the pilot (default: sqlite:///OUT/pilot.sqlite, which must not exist)."),
    raters: int = typer.Option(20, "--raters"),
    inattentive: int = typer.Option(3, "--inattentive", help="Raters who vote at random (most fail an attention check)."),
    concurrency: int = typer.Option(4, "--concurrency", help="Raters rating at the same time."),
    metric: str = typer.Option("lpips", "--metric", help="What attentive raters judge by: lpips (ST-LPIPS, AlexNet) or ms-ssim."),
    noise: float = typer.Option(0.02, "--noise", help="Thurstone noise, in units of the metric's distance."),
    seed: int = typer.Option(0, "--seed"),
    force: bool = typer.Option(False, "--force", help="Replace an existing pilot database and analysis in OUT."),
) -> None:
    """Simulated raters rate the study over HTTP (concurrently), then the analysis is written to OUT."""
    _need_extra()
    from imgcomp.io import check_writable
    from imgcomp.study import analyze, db as votes_db
    from imgcomp.study.definition import load_study
    from imgcomp.study.pilot import pilot_record, run_pilot

    loaded = load_study(study)
    check_writable([out / name for name in (*analyze.OUTPUT_NAMES, "pilot.json")], force)
    out.mkdir(parents=True, exist_ok=True)
    if db is None:
        path = out / "pilot.sqlite"
        if path.exists():
            if not force:
                raise ImgcompError(f"{path}: exists (use --force to start the pilot afresh)")
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        db = f"sqlite:///{path.resolve()}"
    stats = run_pilot(loaded.folder, db, raters=raters, inattentive=inattentive, concurrency=concurrency,
                      metric=metric, noise=noise, seed=seed,
                      progress=lambda message: typer.echo(f"  {message}", err=True))
    engine = votes_db.open_db(db, loaded)
    result = analyze.analyze_votes(loaded, votes_db.answered_trials(engine), focus=None)
    labels = analyze.labels_of(loaded)
    analyze.write_outputs(result, out, labels, force=force)
    record = pilot_record(stats)
    (out / "pilot.json").write_text(json.dumps(record, indent=1) + "\n")
    typer.echo(f"{raters} simulated raters ({inattentive} voting at random), {stats.votes} votes in "
               f"{stats.seconds:.1f} s; duplicate votes refused: {stats.duplicates_refused}, accepted: "
               f"{stats.duplicates_accepted}; resumed after closing: {stats.resumes}")
    for line in analyze.format_table(result, labels):
        typer.echo(line)
    if stats.errors or stats.duplicates_accepted:
        raise ImgcompError("; ".join(stats.errors) or "a duplicate vote was accepted")
