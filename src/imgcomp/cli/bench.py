"""``imgcomp bench codec|train|fuzz``: speed figures as JSON (benchmarks, not tests)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from imgcomp.cli.demo import DEMO_IMAGE

console = Console(stderr=True)
bench_app = typer.Typer(help="Benchmarks: print speed figures and write them as JSON.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(bench_app, name="bench")


def _emit(record: dict, out: Optional[Path], force: bool) -> None:
    from imgcomp.io import write_atomic

    text = json.dumps(record, indent=2)
    typer.echo(text)
    if out is not None:
        write_atomic(out, lambda handle: handle.write((text + "\n").encode()), overwrite=force)


def _table(entries: list[dict]) -> None:
    """The side-by-side for a human, on stderr: one line per codec and setting."""
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    table.add_column("codec", overflow="fold")  # a model folder's whole path, over several lines if need be
    table.add_column("setting", no_wrap=True)
    for heading in ("bpp", "encode ms", "decode ms"):
        table.add_column(heading, justify="right", no_wrap=True)
    for entry in entries:
        for row in entry["rows"]:
            setting = row["quality"] if "quality" in row else row["setting"]
            table.add_row(entry["name"], f"{entry['setting_name']} {setting:g}", f"{row['bpp']:.3f}",
                          f"{1000 * row['encode_s_median']:.1f}", f"{1000 * row['decode_s_median']:.1f}")
    console.print(table)


def _classical_codecs(codecs: Optional[str], settings: list[str]) -> dict[str, Optional[list]]:
    """``--codecs`` and ``--settings`` as {classical codec name: its settings or None (default)};
    learned codec names, unknown names and settings of a codec not asked for are refused."""
    from imgcomp.codecs import get_codec, parse_codec_names
    from imgcomp.codecs.learned import LearnedCodec
    from imgcomp.errors import ImgcompError
    from imgcomp.eval.runner import parse_settings_option

    names = parse_codec_names(codecs) if codecs is not None else []
    for name in names:
        if isinstance(get_codec(name), LearnedCodec):
            raise ImgcompError(f"--codecs {name}: a learned codec; give learned models with --model/-m")
    chosen: dict[str, Optional[list]] = dict.fromkeys(names)
    for name, values in parse_settings_option(settings).items():
        if name not in chosen:
            raise ImgcompError(f"--settings {name}: not one of --codecs ({', '.join(names) or 'none given'})")
        if not values:
            raise ImgcompError(f"--settings {name}: no settings given")
        chosen[name] = values
    return chosen


@bench_app.command("codec")
def bench_codec(
    image: Path = typer.Option(DEMO_IMAGE, help="Image to time (default: the bundled 768x512 photo)."),
    model: Optional[List[str]] = typer.Option(
        None, "--model", "-m",
        help="Learned model: shipped name (mentzer2018/cpu-colour-lp) or folder; repeatable. "
        "Default: the default model, unless --codecs is given.",
    ),
    codecs: Optional[str] = typer.Option(
        None, "--codecs", "-c", help="Classical codecs to time alongside, comma-separated (e.g. webp,avif444; see imgcomp codecs).",
    ),
    settings: Optional[List[str]] = typer.Option(
        None, "--settings",
        help="A classical codec's settings, e.g. --settings webp=20,50,80 (repeatable; default: 5 of its sweep spanning ~0.1-1.5 bpp on the image).",
    ),
    runs: int = typer.Option(5, min=1, help="Runs per quality/setting, round-robin over all of them; medians are reported."),
    large: bool = typer.Option(False, "--large", help="Also encode/decode a 4096x4096 image and report peak memory."),
    refine: int = typer.Option(0, "--refine", min=0, max=1000, help="Time encoding with N steps of latent refinement (imgcomp encode --refine N)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Also write the JSON here."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --out."),
) -> None:
    """Encode/decode time per quality, payload vs. estimated bits, naive-order decode time.

    With several --model or any --codecs: every one on the same image, interleaved (each run
    times every codec and setting once), one entry each, and a table on stderr."""
    from imgcomp.benchmarks import codec_speed, import_torch_seconds, machine, peak_memory_large, side_by_side
    from imgcomp.errors import ImgcompError
    from imgcomp.io import check_writable
    from imgcomp.zoo import get_model, model_folder, model_name

    check_writable([out] if out else [], force)  # before any timing
    names = [os.path.expanduser(name) for name in model or []]
    folders = [model_folder(name).resolve() for name in names]  # unknown names fail here, before any loading
    for index, folder in enumerate(folders):
        if folder in folders[:index]:
            raise ImgcompError(f"--model given twice: {names[folders.index(folder)]} and {names[index]} are one model")
    classical = _classical_codecs(codecs, settings or [])
    loaded = [get_model(name) for name in names] if names or classical else [get_model(None)]
    if len(loaded) == 1 and not classical:  # one model: the record of imgcomp 0.5
        one = loaded[0]
        record = {
            "machine": machine(), "image": str(image), "model": model_name(one), "system": one.system.name,
            "refine_steps": refine,
            "qualities": codec_speed(str(image), one, runs, refine),
            "import_torch_process_s": import_torch_seconds(),
            **one.system.benchmarks(str(image), one),
        }
        if large:
            record["large_image"] = peak_memory_large(str(one.path))
        _table([{"name": record["model"], "setting_name": "quality", "rows": record["qualities"]}])
        _emit(record, out, force)
        return
    entries = side_by_side(str(image), loaded, classical, runs, refine)
    for entry, one in zip(entries, loaded):
        entry["system_benchmarks"] = one.system.benchmarks(str(image), one)
        if large:
            entry["large_image"] = peak_memory_large(str(one.path))
    record = {"machine": machine(), "image": str(image), "runs": runs,
              "import_torch_process_s": import_torch_seconds(), "entries": entries}
    _table(entries)
    _emit(record, out, force)


@bench_app.command("fuzz")
def bench_fuzz(
    minutes: float = typer.Option(1.0, "--minutes", min=0.01, help="How long to fuzz."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model name or folder whose files are mutated."),
    seed: int = typer.Option(0, help="Random seed of the mutations."),
    max_pixels: int = typer.Option(1 << 16, "--max-pixels", min=1, help="Pixel limit for the decodes (legacy files have no bytes-per-pixel floor)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Also write the JSON here."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --out."),
) -> None:
    """Decode mutated small files (headers, sections, payloads; checksums repaired) for --minutes:
    cases/s, the slowest case, peak memory, and any case that ended in neither ImgcompError nor an
    image (exit 1 if any)."""
    from imgcomp import fuzz
    from imgcomp.benchmarks import machine
    from imgcomp.io import check_writable
    from imgcomp.zoo import get_model, model_name

    check_writable([out] if out else [], force)
    loaded = get_model(model)
    report = fuzz.run(fuzz.sample_files(loaded), loaded, seconds=60 * minutes, seed=seed, max_pixels=max_pixels)
    console.print(report.summary())
    record = {
        "machine": machine(), "model": model_name(loaded), "seed": seed, "max_pixels": max_pixels,
        **{k: v for k, v in report.__dict__.items()}, "cases_per_second": report.cases_per_second,
    }
    _emit(record, out, force)
    if report.failures:
        raise typer.Exit(1)


@bench_app.command("train")
def bench_train(
    presets: List[str] = typer.Option(["cpu", "paper"], "--preset", help="Presets to time."),
    system: str = typer.Option("mentzer2018", "--system", help="The system whose presets these are."),
    steps: int = typer.Option(20, help="Timed steps per preset (after one warm-up; the first few are slow)."),
    batch_size: int = typer.Option(8, help="Images per step."),
    crop: int = typer.Option(128, help="Crop size."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Also write the JSON here."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --out."),
) -> None:
    """Training throughput (steps/s, images/s) of each preset on this machine."""
    from imgcomp.benchmarks import machine
    from imgcomp.io import check_writable
    from imgcomp.systems import get_system

    check_writable([out] if out else [], force)  # before any timing
    chosen = get_system(system)
    _emit({"machine": machine(), "presets": [chosen.training_throughput(p, steps, batch_size, crop) for p in presets]}, out, force)
