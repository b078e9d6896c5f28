"""``imgcomp bench codec|train|fuzz``: speed figures as JSON (benchmarks, not tests)."""

from __future__ import annotations

import json
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


@bench_app.command("codec")
def bench_codec(
    image: Path = typer.Option(DEMO_IMAGE, help="Image to time (default: the bundled 768x512 photo)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model name or folder."),
    runs: int = typer.Option(5, help="Runs per quality; medians are reported."),
    large: bool = typer.Option(False, "--large", help="Also encode/decode a 4096x4096 image and report peak memory."),
    refine: int = typer.Option(0, "--refine", min=0, max=1000, help="Time encoding with N steps of latent refinement (imgcomp encode --refine N)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Also write the JSON here."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --out."),
) -> None:
    """Encode/decode time per quality, payload vs. estimated bits, naive-order decode time."""
    from imgcomp.benchmarks import codec_speed, import_torch_seconds, machine, peak_memory_large
    from imgcomp.io import check_writable
    from imgcomp.zoo import get_model, model_name

    check_writable([out] if out else [], force)  # before any timing
    loaded = get_model(model)
    record = {
        "machine": machine(), "image": str(image), "model": model_name(loaded), "system": loaded.system.name,
        "refine_steps": refine,
        "qualities": codec_speed(str(image), loaded, runs, refine),
        "import_torch_process_s": import_torch_seconds(),
        **loaded.system.benchmarks(str(image), loaded),
    }
    if large:
        record["large_image"] = peak_memory_large(str(loaded.path))
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
