"""CLI commands: ``eval`` (run codecs over a folder), ``report`` (BD-rates, tables, plots) and
``compare`` (reconstructions side by side at one rate)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main app."""
    app.command("eval")(eval_command)
    app.command("report")(report_command)
    app.command("compare")(compare_command)
    app.command("codecs")(codecs_command)


def codecs_command(
    json_output: bool = typer.Option(False, "--json", help="One JSON object per codec: system, model, qualities, library."),
) -> None:
    """List every codec, classical and learned, one name per line (learned ones as system/model)."""
    import json

    from imgcomp.codecs import available_codecs, get_codec

    for name in available_codecs():
        if not json_output:
            typer.echo(name)
            continue
        codec = get_codec(name)
        parameters = codec.parameters()
        typer.echo(json.dumps({
            "name": name, "label": codec.label or name, "kind": "learned" if "system" in parameters else "classical",
            "system": parameters.get("system"), "model": parameters.get("model"),
            "setting_name": codec.setting_name, "settings": list(codec.default_settings),
            "qualities": list(codec.default_settings) if "system" in parameters else None,
            "library": codec.library_version(), "parameters": parameters,
        }))


def _codec_names(codecs: str | None, models: list[Path] | None, refine: int = 0) -> list[str] | None:
    """``--codecs`` plus every ``--model`` folder registered as a codec (after the classical codecs
    when ``--codecs`` is not given); None: the command's default (every classical codec)."""
    from imgcomp.codecs import available_codecs, parse_codec_names, register_model_codec

    extra = [register_model_codec(folder, refine) for folder in models or []]
    names = parse_codec_names(codecs) if codecs is not None else None
    if extra:
        names = (names or available_codecs(baseline_only=True)) + [n for n in extra if n not in (names or [])]
    return names


def eval_command(
    image_dir: Path = typer.Argument(..., help="Folder of PNG/JPEG images (not searched recursively)."),
    out: Path = typer.Option(..., "--out", "-o", help="Results JSON; resumed if it is from the same run."),
    codecs: str | None = typer.Option(
        None, "--codecs", "-c", help="Comma-separated codec names (default: every classical codec)."
    ),
    jobs: int | None = typer.Option(None, "--jobs", "-j", help="Worker processes (default: min(2, CPUs))."),
    settings: list[str] | None = typer.Option(
        None,
        "--settings",
        help="Override a codec's sweep, e.g. --settings jpeg420=10,50,90 (repeatable).",
    ),
    model: list[Path] | None = typer.Option(
        None, "--model", "-m",
        help="An exported model folder to evaluate as codec SYSTEM/NAME (its folder's name; RUN for RUN/model); repeatable.",
    ),
    refine: int = typer.Option(0, "--refine", min=0, max=1000, help="With --model: refine each latent in N steps (codec SYSTEM/NAME+refineN)."),
    lpips: str = typer.Option(
        "alex", "--lpips",
        help="LPIPS column: ST-LPIPS alex (default; ~1-2.5 s per 768x512 reconstruction on one CPU core), "
        "vgg (~3x that) or none (the eval as fast as without it).",
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite a results file from a different run."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Compress every image with every codec at every setting; record bpp, PSNR, MS-SSIM, LPIPS, times.

    Learned codecs are named by system and model: `imgcomp codecs` lists them
    (e.g. mentzer2018/cpu-colour-lp, mentzer2018/cpu-colour-lp+refine20)."""
    from imgcomp.eval.runner import evaluate_folder, lpips_config, parse_settings_option

    lpips_config(lpips)  # a bad --lpips fails before any work
    names = _codec_names(codecs, model, refine)
    summary = evaluate_folder(
        image_dir,
        out,
        names,
        settings=parse_settings_option(settings or []),
        jobs=jobs,
        force=force,
        progress=progress,
        lpips=lpips,
    )
    typer.echo(
        f"{summary.path}: {summary.computed} measurements computed, {summary.skipped} already there, "
        f"{summary.seconds:.1f} s"
    )


def report_command(
    results: list[Path] = typer.Argument(..., help="One or more results JSON files from 'imgcomp eval'."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for report.md, report.json and the plots."),
    ref: str = typer.Option("jpeg420", "--ref", help="Reference codec for BD-rates and relative sizes."),
    levels: str = typer.Option(
        "0.90,0.95,0.97,0.98,0.99,0.995", "--levels", help="MS-SSIM levels for the file-size table."
    ),
    tag: list[str] | None = typer.Option(
        None, "--tag", help="FILE=TAG: name that file's codecs NAME@TAG, to compare two runs of one codec (repeatable); e.g. --ref imgcomp@old."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite existing report files."),
) -> None:
    """Average RD curves, BD-rates, file size at fixed MS-SSIM, timings: Markdown, JSON and plots."""
    from imgcomp.errors import ImgcompError
    from imgcomp.eval.report import build_report, merge_results, write_report

    try:
        quality_levels = [float(part) for part in levels.split(",") if part.strip()]
    except ValueError:
        raise ImgcompError(f"--levels {levels!r}: expected comma-separated numbers") from None
    if not quality_levels or not all(0 < level < 1 for level in quality_levels):
        raise ImgcompError(f"--levels {levels!r}: MS-SSIM levels must lie in (0, 1)")
    tags = {}
    for item in tag or []:
        path, _, name = item.rpartition("=")
        if not path or not name:
            raise ImgcompError(f"--tag {item!r}: expected FILE=TAG")
        tags[path] = name
    report = build_report(merge_results(results, tags), ref, levels=quality_levels)
    written = write_report(report, out, force=force)
    lpips = report.has_lpips
    typer.echo(f"BD-rate vs {report.label(ref)} (mean over images): MS-SSIM dB / PSNR" + (" / LPIPS" if lpips else ""))
    for codec in report.codecs:
        if codec == ref:
            continue
        ms, ps = report.bd_rates["ms_ssim_db"][codec].mean, report.bd_rates["psnr"][codec].mean
        extra = f" / {_percent(report.bd_rates['lpips'][codec].mean):>8}" if lpips else ""
        typer.echo(f"  {report.label(codec):<14} {_percent(ms):>8} / {_percent(ps):>8}{extra}")
    typer.echo(f"wrote {', '.join(p.name for p in written)} to {out}")


def compare_command(
    image: Path = typer.Argument(..., help="Image to compress."),
    bpp: float = typer.Option(..., "--bpp", help="Target rate in bits per pixel."),
    out: Path = typer.Option(..., "--out", "-o", help="Figure file (.png, .svg or .pdf)."),
    codecs: str | None = typer.Option(
        None, "--codecs", "-c", help="Comma-separated codec names (default: every classical codec)."
    ),
    crop: str | None = typer.Option(None, "--crop", help="Region x,y,w,h in pixels (default: centre)."),
    model: list[Path] | None = typer.Option(
        None, "--model", "-m",
        help="An exported model folder to add as codec SYSTEM/NAME (its folder's name; RUN for RUN/model); repeatable.",
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing figure."),
) -> None:
    """One figure: a crop of the original and of every codec at the setting closest to --bpp."""
    from imgcomp.eval.compare import write_comparison

    names = _codec_names(codecs, model)
    for r in write_comparison(image, bpp, out, names, crop, force=force):
        ms = "n/a" if r.ms_ssim is None else f"{r.ms_ssim:.4f}"
        typer.echo(
            f"{r.label:<14} {r.setting_name} {r.setting:<6g} {r.bpp:.3f} bpp  {r.psnr:.2f} dB  MS-SSIM {ms}"
        )
    typer.echo(f"wrote {out}")


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.1f}%"
