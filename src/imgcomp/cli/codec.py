"""``imgcomp encode``, ``imgcomp decode`` and ``imgcomp info``: real files with a trained model.

``-`` names standard input or output (one file per run, as cwebp and djpeg do); several files
can be coded in parallel processes (``--jobs``), which write the same bytes as a serial run.
``info`` reads headers only (no torch, no decoding).
"""

from __future__ import annotations

import json
import os
import sys
import time
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Callable, List, Optional

import typer
from rich.console import Console
from rich.markup import escape

from imgcomp.errors import ImgcompError

console = Console(stderr=True)
STDIO = "-"


def register(app: typer.Typer) -> None:
    app.command(name="encode")(encode_command)
    app.command(name="decode")(decode_command)
    app.command(name="info")(info_command)


def _is_stdio(path: Path | None) -> bool:
    return path is not None and str(path) == STDIO


def _outputs(inputs: List[Path], output: Optional[Path], suffix: str) -> list[Path]:
    """One output per input: ``-o FILE`` (or ``-o -``) for a single input, ``-o FOLDER`` (or
    beside each input) for many."""
    if any(_is_stdio(path) for path in inputs) and len(inputs) > 1:
        raise ImgcompError("-: standard input can only be the single input")
    if _is_stdio(output) and len(inputs) > 1:
        raise ImgcompError("-o -: standard output takes a single input")
    if len(inputs) == 1 and output is not None and not output.is_dir():
        return [output]
    if _is_stdio(inputs[0]):
        raise ImgcompError("-: reading standard input needs -o FILE (or -o - for standard output)")
    folder = output
    if folder is not None and not folder.is_dir():
        raise ImgcompError(f"{folder}: with several inputs, -o must be an existing folder")
    return [(folder or path.parent) / (path.stem + suffix) for path in inputs]


def _check_files(inputs: list[Path], outputs: list[Path], force: bool) -> None:
    """Before any work: every input exists, no output would replace a file (or another output)."""
    from imgcomp.io import check_writable

    for source in inputs:
        if not _is_stdio(source) and not source.is_file():
            raise ImgcompError(f"{source}: no such file")
    check_writable([path for path in outputs if not _is_stdio(path)], force)


def _read_input(source: Path) -> bytes:
    if _is_stdio(source):
        data = sys.stdin.buffer.read()
        if not data:
            raise ImgcompError("-: standard input is empty")
        return data
    if not source.is_file():
        raise ImgcompError(f"{source}: no such file")
    return source.read_bytes()


def _write_output(target: Path, data: bytes, force: bool) -> None:
    from imgcomp.io import write_atomic

    if _is_stdio(target):
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        write_atomic(target, lambda handle: handle.write(data), overwrite=force)


# Work on one file runs in this process or in a worker process; each process loads its model once.
_loaded: dict = {}


def _model(name: str | None):
    from imgcomp.zoo import get_model

    if name not in _loaded:
        _loaded[name] = get_model(name)
    return _loaded[name]


def _set_max_pixels(max_pixels: int | None) -> None:
    """``--max-pixels``: through the environment, so worker processes (``--jobs``) see it too."""
    if max_pixels is not None:
        from imgcomp.limits import ENV_MAX_PIXELS

        os.environ[ENV_MAX_PIXELS] = str(max_pixels)


def _worker_init(threads: int) -> None:
    """Split the cores among worker processes: torch's threads where torch is in use, BLAS's always."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(threads)


def _run_all(
    work: Callable[..., dict], jobs_args: list[tuple], jobs: int, json_output: bool, to_stdout: bool
) -> None:
    """Run ``work(*args)`` for every file, in ``jobs`` processes, with per-file progress; print one
    record per file in input order and a summary (on stderr when the data goes to stdout)."""
    from rich.progress import Progress

    started = time.perf_counter()
    records: list[dict | None] = [None] * len(jobs_args)
    with Progress(console=console, transient=True, disable=len(jobs_args) < 2) as bar:
        task = bar.add_task("files", total=len(jobs_args))
        if jobs <= 1 or len(jobs_args) < 2:
            for index, args in enumerate(jobs_args):
                records[index] = work(*args)
                bar.advance(task)
        else:
            threads = max(1, (os.cpu_count() or 1) // jobs)
            with ProcessPoolExecutor(jobs, initializer=_worker_init, initargs=(threads,)) as pool:
                futures = {pool.submit(work, *args): index for index, args in enumerate(jobs_args)}
                pending = set(futures)
                while pending:
                    done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                    for future in done:
                        if future.exception() is not None:
                            for other in pending:
                                other.cancel()
                            raise future.exception()
                        records[futures[future]] = future.result()
                        bar.advance(task)
    echo = (lambda text: typer.echo(text, err=True)) if to_stdout else typer.echo
    for record in records:
        if json_output:
            echo(json.dumps(record))
        else:
            echo("  ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))
    if len(records) > 1 and not json_output:
        total = sum(record["bytes"] for record in records)
        echo(f"{len(records)} files, {total} bytes of .icz, {time.perf_counter() - started:.2f} s, {jobs} job(s)")


def _lowpass_choice(block: int | None, step: int | None):
    """``--lowpass-block`` / ``--lowpass-step`` -> ``encode_image``'s ``lowpass``: ``"auto"`` (the
    model's system chooses) when neither is given, none for block 0, else fixed settings (block 32,
    step 4 by default)."""
    from imgcomp.postfilter.lowpass import AUTO, DEFAULT_LOWPASS, LowpassSettings

    if block is None and step is None:
        return AUTO
    if block == 0:
        if step is not None:
            raise ImgcompError("--lowpass-step has no meaning with --lowpass-block 0 (no low-pass layer)")
        return None
    return LowpassSettings(block or DEFAULT_LOWPASS.block, step or DEFAULT_LOWPASS.step)


def _encode_one(
    source: Path, target: Path, model: str | None, quality: int | None, lowpass, refine: int,
    target_bytes: int | None, target_bpp: float | None, force: bool, keep_metadata: bool = False,
) -> dict:
    from imgcomp.api import encode_image

    data = _read_input(source)
    loaded = _model(model)
    record: dict = {"input": str(source), "output": str(target)}
    if target_bytes is not None or target_bpp is not None:
        from imgcomp.target import encode_to_target

        chosen = encode_to_target(
            data, max_bytes=target_bytes, max_bpp=target_bpp, model=loaded, keep_metadata=keep_metadata
        )
        result = chosen.result
        record["target_bytes"] = chosen.max_bytes
        record["encodes"] = chosen.encodes
    else:
        result = encode_image(data, quality, loaded, lowpass=lowpass, refine_steps=refine, keep_metadata=keep_metadata)
    _write_output(target, result.data, force)
    pixels = result.width * result.height
    settings = result.lowpass
    record.update({
        "width": result.width, "height": result.height, "quality": result.quality,
        "lowpass": "none" if settings is None else f"{settings.block}/{settings.step}",
        "bytes": len(result.data), "header_bytes": result.header_bytes, "bpp": result.bpp,
        "payload_bpp": 8 * result.payload_bytes / pixels, "metadata_bytes": result.metadata_bytes,
        "estimated_bits": result.estimated_bits,
        "estimated_bpp": result.estimated_bits / pixels, "encode_seconds": result.seconds,
    })
    return record


def encode_command(
    inputs: List[Path] = typer.Argument(..., help="Images to compress (PNG, JPEG, WebP, TIFF, ...); - reads standard input."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Output file (one input; - for standard output) or folder; default: beside each input, .icz."),
    quality: Optional[int] = typer.Option(None, "-q", "--quality", help="Quality level, 1 = smallest file; default: the model's highest."),
    target_size: Optional[int] = typer.Option(None, "--target-size", help="Largest file not above this many bytes: the encoder picks the quality and low-pass settings by search (several encodes)."),
    target_bpp: Optional[float] = typer.Option(None, "--target-bpp", help="As --target-size, in bits per pixel of the whole file."),
    model: Optional[str] = typer.Option(None, "-m", "--model", help="Shipped model name or exported model folder."),
    lowpass_block: Optional[int] = typer.Option(None, "--lowpass-block", help="Block size (16, 32 or 64 pixels) of the low-pass correction layer; 0 leaves it out (only what the paper's system codes). Default: block size and step chosen per image by rate-distortion search (or, for a rippel2017 model trained for fixed settings, those)."),
    lowpass_step: Optional[int] = typer.Option(None, "--lowpass-step", help="Quantization step (1-16 levels) of the low-pass correction layer (default 4 when --lowpass-block is given)."),
    refine: int = typer.Option(0, "--refine", min=0, max=1000, help="Optimise each image's latent for the decoder in N gradient steps before coding (smaller, better files; each step costs about as much as decoding). 0: the encoder's latent, as published."),
    jobs: int = typer.Option(1, "-j", "--jobs", min=1, max=64, help="Encode this many files at once, in separate processes (same bytes as one at a time)."),
    keep_metadata: bool = typer.Option(False, "--keep-metadata", help="Keep the input's EXIF (less its orientation, applied to the pixels) and its ICC profile if sRGB (others are converted to sRGB on input, so they no longer apply); decode restores them. Default: strip, as cwebp does."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object per file (on stderr when the file goes to standard output)."),
    max_pixels: Optional[int] = typer.Option(None, "--max-pixels", min=1, help="Refuse images larger than this many pixels (default 67108864 = 8192x8192, or IMGCOMP_MAX_PIXELS); bounds memory, see docs/usage.md."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing outputs."),
) -> None:
    """Compress images to .icz files."""
    _set_max_pixels(max_pixels)
    lowpass = _lowpass_choice(lowpass_block, lowpass_step)
    if target_size is not None or target_bpp is not None:
        if target_size is not None and target_bpp is not None:
            raise ImgcompError("give --target-size or --target-bpp, not both")
        if quality is not None or lowpass_block is not None or lowpass_step is not None or refine:
            raise ImgcompError("--target-size/--target-bpp choose the quality and low-pass settings; drop --quality, --lowpass-*, --refine")
    outputs = _outputs(inputs, output, ".icz")
    _check_files(inputs, outputs, force)
    _model(model)  # a bad model name fails before any work
    jobs_args = [
        (source, target, model, quality, lowpass, refine, target_size, target_bpp, force, keep_metadata)
        for source, target in zip(inputs, outputs)
    ]
    _run_all(_encode_one, jobs_args, jobs, json_output, _is_stdio(outputs[0]))


def _decode_one(source: Path, target: Path, model: str | None, fmt: str | None, force: bool, engine: str = "auto") -> dict:
    from imgcomp import container, limits

    data = _read_input(source)
    header, _ = container.unpack(data)  # a malformed or oversized file fails before any model loads
    limits.check_image("decode", header.width, header.height)
    from imgcomp.api import decode_image, read_metadata_section
    from imgcomp.io import image_bytes, image_format

    started = time.perf_counter()
    pixels = decode_image(data, model, engine=engine)  # models are cached per process by imgcomp.zoo
    seconds = time.perf_counter() - started
    if fmt is None:
        fmt = image_format(target.suffix or "png") if not _is_stdio(target) else "PNG"
    metadata = read_metadata_section(data)
    _write_output(target, image_bytes(pixels, fmt, metadata), force)
    height, width = pixels.shape[:2]
    return {
        "input": str(source), "output": str(target), "width": width, "height": height,
        "bytes": len(data), "bpp": 8 * len(data) / (width * height), "decode_seconds": seconds,
        "metadata": "+".join(sorted(metadata)) or "none",
    }


def decode_command(
    inputs: List[Path] = typer.Argument(..., help=".icz files to decompress; - reads standard input."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Output image (one input; - for standard output) or folder; default: beside each input."),
    image_format_name: Optional[str] = typer.Option(None, "--format", "-f", help="Output format (png, jpg, webp, tiff, bmp, ...); default: the output's suffix, else PNG."),
    model: Optional[str] = typer.Option(None, "-m", "--model", help="Model folder, when the file's model is not shipped."),
    jobs: int = typer.Option(1, "-j", "--jobs", min=1, max=64, help="Decode this many files at once, in separate processes."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object per file (on stderr when the image goes to standard output)."),
    max_pixels: Optional[int] = typer.Option(None, "--max-pixels", min=1, help="Refuse images larger than this many pixels (default 67108864 = 8192x8192, or IMGCOMP_MAX_PIXELS); bounds memory, see docs/usage.md."),
    engine: str = typer.Option("auto", "--engine", help="auto: without torch where the file allows (mentzer2018 stream version 2, rippel2017), else torch; numpy: without torch or fail; torch: the torch model (every file; the cross-check). Same symbols either way; pixels may differ by one level."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing outputs."),
) -> None:
    """Decompress .icz files to PNG (or any format by --format or the output's suffix)."""
    from imgcomp.api import ENGINES

    if engine not in ENGINES:
        raise ImgcompError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    _set_max_pixels(max_pixels)
    from imgcomp.io import image_format, image_suffix

    fmt = None if image_format_name is None else image_format(image_format_name)
    suffix = ".png" if fmt is None else image_suffix(fmt)
    outputs = _outputs(inputs, output, suffix)
    for target in outputs:
        if fmt is not None and not _is_stdio(target) and target.suffix and image_format(target.suffix) != fmt:
            raise ImgcompError(f"{target}: suffix {target.suffix!r} does not match --format {image_format_name}")
        if fmt is None and not _is_stdio(target):
            image_format(target.suffix or "png")  # an unknown suffix fails before any decoding
    _check_files(inputs, outputs, force)
    jobs_args = [(source, target, model, fmt, force, engine) for source, target in zip(inputs, outputs)]
    _run_all(_decode_one, jobs_args, jobs, json_output, _is_stdio(outputs[0]))


def info_command(
    inputs: List[Path] = typer.Argument(..., help=".icz files to describe; - reads standard input."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object per file."),
) -> None:
    """Describe .icz files without decoding them: container and stream version, system, model,
    quality, size, sections and their bytes, bpp, CRC. A malformed file gives decode's one-line
    error (exit 2); with several files the others are still described."""
    from imgcomp.fileinfo import describe, format_text

    if any(_is_stdio(path) for path in inputs) and len(inputs) > 1:
        raise ImgcompError("-: standard input can only be the single input")
    if len(inputs) == 1:
        info = describe(_read_input(inputs[0]))
        typer.echo(json.dumps({"file": str(inputs[0]), **info}) if json_output else format_text(str(inputs[0]), info))
        return
    failed = 0
    for source in inputs:
        try:
            info = describe(_read_input(source))
        except ImgcompError as exc:
            failed += 1
            console.print(f"[bold red]error:[/bold red] {escape(f'{source}: {exc}')}", highlight=False, soft_wrap=True)
            continue
        typer.echo(json.dumps({"file": str(source), **info}) if json_output else format_text(str(source), info))
    if failed:
        raise typer.Exit(2)
