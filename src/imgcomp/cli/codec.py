"""``imgcomp encode`` and ``imgcomp decode``: real files with a trained model."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from imgcomp.errors import ImgcompError

console = Console(stderr=True)


def register(app: typer.Typer) -> None:
    app.command(name="encode")(encode_command)
    app.command(name="decode")(decode_command)


def _outputs(inputs: List[Path], output: Optional[Path], suffix: str) -> list[Path]:
    """One output per input: ``-o FILE`` for a single input, ``-o FOLDER`` (or beside) for many."""
    if len(inputs) == 1 and output is not None and not output.is_dir():
        return [output]
    folder = output
    if folder is not None and not folder.is_dir():
        raise ImgcompError(f"{folder}: with several inputs, -o must be an existing folder")
    return [(folder or path.parent) / (path.stem + suffix) for path in inputs]


def _run_all(inputs, outputs, work, json_output: bool) -> None:
    from rich.progress import Progress

    records = []
    with Progress(console=console, transient=True, disable=len(inputs) < 2) as bar:
        task = bar.add_task("files", total=len(inputs))
        for source, target in zip(inputs, outputs):
            records.append(work(source, target))
            bar.advance(task)
    for record in records:
        if json_output:
            typer.echo(json.dumps(record))
        else:
            typer.echo(
                "  ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items())
            )


def _lowpass_choice(block: int | None, step: int | None):
    """``--lowpass-block`` / ``--lowpass-step`` -> ``encode_image``'s ``lowpass``: per-image search
    when neither is given, none for block 0, else fixed settings (block 32, step 4 by default)."""
    from imgcomp.postfilter.lowpass import AUTO, DEFAULT_LOWPASS, LowpassSettings

    if block is None and step is None:
        return AUTO
    if block == 0:
        if step is not None:
            raise ImgcompError("--lowpass-step has no meaning with --lowpass-block 0 (no low-pass layer)")
        return None
    return LowpassSettings(block or DEFAULT_LOWPASS.block, step or DEFAULT_LOWPASS.step)


def encode_command(
    inputs: List[Path] = typer.Argument(..., help="Images to compress (PNG, JPEG, WebP, TIFF, ...)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Output file (one input) or folder; default: beside each input, .icz."),
    quality: Optional[int] = typer.Option(None, "-q", "--quality", help="Quality level, 1 = smallest file; default: the model's highest."),
    model: Optional[str] = typer.Option(None, "-m", "--model", help="Shipped model name or exported model folder."),
    lowpass_block: Optional[int] = typer.Option(None, "--lowpass-block", help="Block size (16, 32 or 64 pixels) of the low-pass correction layer; 0 leaves it out (only what Mentzer et al. code). Default: block size and step chosen per image by rate-distortion search."),
    lowpass_step: Optional[int] = typer.Option(None, "--lowpass-step", help="Quantization step (1-16 levels) of the low-pass correction layer (default 4 when --lowpass-block is given)."),
    refine: int = typer.Option(0, "--refine", min=0, max=1000, help="Optimise each image's latent for the decoder in N gradient steps before coding (smaller, better files; each step costs about as much as decoding). 0: the encoder's latent, as published."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object per file."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing outputs."),
) -> None:
    """Compress images to .icz files."""
    from imgcomp.api import encode_image
    from imgcomp.io import check_writable, write_atomic
    from imgcomp.zoo import get_model

    lowpass = _lowpass_choice(lowpass_block, lowpass_step)
    outputs = _outputs(inputs, output, ".icz")
    check_writable(outputs, force)
    loaded = get_model(model)

    def work(source: Path, target: Path) -> dict:
        result = encode_image(source, quality, loaded, lowpass=lowpass, refine_steps=refine)
        write_atomic(target, lambda handle: handle.write(result.data))
        pixels = result.width * result.height
        return {
            "input": str(source), "output": str(target), "width": result.width,
            "height": result.height, "quality": result.quality, "bytes": len(result.data),
            "header_bytes": result.header_bytes, "bpp": result.bpp,
            "payload_bpp": 8 * result.payload_bytes / pixels,
            "estimated_bits": result.estimated_bits,
            "estimated_bpp": result.estimated_bits / pixels, "encode_seconds": result.seconds,
        }

    _run_all(inputs, outputs, work, json_output)


def decode_command(
    inputs: List[Path] = typer.Argument(..., help=".icz files to decompress."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Output image (one input) or folder; default: beside each input, .png."),
    model: Optional[str] = typer.Option(None, "-m", "--model", help="Model folder, when the file's model is not shipped."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object per file."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing outputs."),
) -> None:
    """Decompress .icz files to PNG (or any format by the output's suffix)."""
    from imgcomp.api import decode_image
    from imgcomp.io import check_writable, save_image

    outputs = _outputs(inputs, output, ".png")
    check_writable(outputs, force)

    def work(source: Path, target: Path) -> dict:
        if not source.is_file():
            raise ImgcompError(f"{source}: no such file")
        data = source.read_bytes()
        started = time.perf_counter()
        pixels = decode_image(data, model)
        seconds = time.perf_counter() - started
        save_image(pixels, target, force=force)
        height, width = pixels.shape[:2]
        return {
            "input": str(source), "output": str(target), "width": width, "height": height,
            "bytes": len(data), "bpp": 8 * len(data) / (width * height), "decode_seconds": seconds,
        }

    _run_all(inputs, outputs, work, json_output)
