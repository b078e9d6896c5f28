"""``imgcomp downstream``: how well machine perception works on compressed images."""

from __future__ import annotations

from pathlib import Path

import typer

from imgcomp.zoo import DEFAULT_MODEL

downstream_app = typer.Typer(
    help="Downstream machine perception on every codec's reconstructions (text detection and recognition).",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add the ``downstream`` command group to the main app."""
    app.add_typer(downstream_app, name="downstream")


@downstream_app.command("ocr")
def ocr_command(
    image_dir: Path = typer.Argument(..., help="Folder of images, each with its ground-truth .json beside it (imgcomp data text-scenes)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for results.json (resumed; refused if from another run, unless --force) and, rewritten from it each time, summary.json, table.md and the plots."),
    codecs: str = typer.Option(
        f"jpeg420,webp,avif444,jpegxl,{DEFAULT_MODEL}", "--codecs", "-c", help="Comma-separated codec names."
    ),
    settings: list[str] | None = typer.Option(
        None, "--settings", help="Override a codec's sweep, e.g. --settings jpeg420=3,8,18,35 (repeatable)."
    ),
    rates: str = typer.Option("0.23,0.37,0.67,1.0", "--rates", help="Rates (bpp) of the table."),
    jobs: int = typer.Option(1, "--jobs", "-j", help="Worker processes."),
    force: bool = typer.Option(False, "--force", help="Start afresh over results of a different run."),
) -> None:
    """Run the PP-OCRv4 detector and recogniser (rapidocr-onnxruntime) on the originals and on
    every codec's reconstructions; score detection F1 (IoU >= 0.5) and character error rate
    against the ground truth; curves vs bpp and a table at --rates."""
    import json

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from imgcomp.codecs import parse_codec_names
    from imgcomp.errors import ImgcompError
    from imgcomp.eval.downstream_ocr import evaluate_ocr, plot_curves, summarise, table_markdown
    from imgcomp.eval.runner import parse_settings_option
    from imgcomp.io import write_atomic

    try:
        table_rates = [float(part) for part in rates.split(",") if part.strip()]
    except ValueError:
        raise ImgcompError(f"--rates {rates!r}: expected comma-separated numbers") from None
    if not table_rates or min(table_rates) <= 0:
        raise ImgcompError(f"--rates {rates!r}: rates must be positive")
    if out.exists() and not out.is_dir():
        raise ImgcompError(f"{out}: not a folder")
    with Progress(TextColumn("OCR"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("ocr", total=None)
        document = evaluate_ocr(
            image_dir, out / "results.json", parse_codec_names(codecs),
            settings=parse_settings_option(settings or []), jobs=jobs, force=force,
            on_progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    summary = summarise(document, table_rates)
    table = table_markdown(summary)
    for name, text in (("summary.json", json.dumps(summary, indent=1) + "\n"), ("table.md", table)):
        write_atomic(out / name, lambda handle, text=text: handle.write(text.encode("utf-8")))
    plot_curves(summary, out)
    typer.echo(table, nl=False)
    typer.echo(f"wrote results.json, summary.json, table.md, f1_vs_bpp.png, cer_vs_bpp.png to {out}")
