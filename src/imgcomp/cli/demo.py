"""``imgcomp demo``: the README's first command."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

DEMO_IMAGE = Path(__file__).resolve().parent.parent / "assets" / "demo.png"


def register(app: typer.Typer) -> None:
    app.command()(demo)


def _jpeg_at_size(image, target_bytes: int):
    """The JPEG 4:2:0 quality whose file is closest to ``target_bytes``."""
    from imgcomp.codecs import get_codec

    jpeg = get_codec("jpeg420")
    best = None
    for quality in range(1, 96):
        data = jpeg.encode(image, quality)
        if best is None or abs(len(data) - target_bytes) < abs(len(best[1]) - target_bytes):
            best = (quality, data)
    return best[0], best[1], jpeg.decode(best[1])


def demo(
    image: Path = typer.Option(DEMO_IMAGE, help="Image to compress (default: a bundled 768x512 photo)."),
    out: Path = typer.Option(Path("demo-output"), "--out", "-o", help="Folder for the .icz file and the decoded PNGs."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model name or folder (default: the shipped model)."),
    refine: int = typer.Option(0, "--refine", min=0, max=1000, help="Refine each latent in N steps before coding (as `imgcomp encode --refine`; slow)."),
) -> None:
    """Compress a photo with the learned codec at every quality level, decode it again, and compare
    size, bpp, PSNR and MS-SSIM with JPEG 4:2:0 at the same file size."""
    from imgcomp.api import decode_image, encode_image
    from imgcomp.io import load_image, save_image, write_atomic
    from imgcomp.metrics import bits_per_pixel, ms_ssim, psnr
    from imgcomp.zoo import get_model, model_name, shipped_models

    console = Console()
    pixels = load_image(image)
    height, width = pixels.shape[:2]
    if model is None and not shipped_models():
        _classical_only(console, image, pixels)
        return
    loaded = get_model(model)
    out.mkdir(parents=True, exist_ok=True)
    refined = f", latent refined in {refine} steps" if refine else ""
    table = Table(title=f"{image.name} ({width}x{height}), model {model_name(loaded)}{refined}")
    for column in ("codec", "quality", "bytes", "bpp", "PSNR dB", "MS-SSIM", "encode s", "decode s"):
        table.add_column(column, justify="right" if column != "codec" else "left")
    import time

    for quality in range(1, loaded.system.qualities(loaded) + 1):
        result = encode_image(pixels, quality, loaded, refine_steps=refine)
        started = time.perf_counter()
        decoded = decode_image(result.data, loaded)
        decode_seconds = time.perf_counter() - started
        write_atomic(out / f"demo-q{quality}.icz", lambda handle: handle.write(result.data))
        save_image(decoded, out / f"demo-q{quality}.png", force=True)
        size = len(result.data)
        table.add_row(
            "imgcomp", str(quality), str(size), f"{bits_per_pixel(size, height, width):.3f}",
            f"{psnr(pixels, decoded):.2f}", f"{ms_ssim(pixels, decoded):.4f}",
            f"{result.seconds:.2f}", f"{decode_seconds:.2f}",
        )
        jpeg_quality, jpeg_data, jpeg_decoded = _jpeg_at_size(pixels, size)
        table.add_row(
            "  JPEG", str(jpeg_quality), str(len(jpeg_data)),
            f"{bits_per_pixel(len(jpeg_data), height, width):.3f}",
            f"{psnr(pixels, jpeg_decoded):.2f}", f"{ms_ssim(pixels, jpeg_decoded):.4f}", "", "",
            end_section=True,
        )
    console.print(table)
    console.print("JPEG rows: JPEG 4:2:0 (libjpeg-turbo) at the quality whose file size is closest.")
    console.print(
        "Times: one run each; the first row also pays one-time setup (warm-up, the wavefront schedule "
        "for this image size). `imgcomp bench codec` gives medians of repeated runs."
    )
    console.print(f"Files written to {out}/ (demo-qN.icz and the decoded demo-qN.png).")


def _classical_only(console: Console, image: Path, pixels) -> None:
    """What the demo can show when this installation carries no trained model."""
    from imgcomp.codecs import get_codec
    from imgcomp.metrics import bits_per_pixel, ms_ssim, psnr

    height, width = pixels.shape[:2]
    console.print(
        "[yellow]No trained model is installed[/yellow]: showing the classical codecs only. "
        "Train one with `imgcomp train` and pass it with --model."
    )
    table = Table(title=f"{image.name} ({width}x{height})")
    for column in ("codec", "setting", "bytes", "bpp", "PSNR dB", "MS-SSIM"):
        table.add_column(column, justify="right" if column != "codec" else "left")
    for name, setting in (("jpeg420", 50), ("webp", 50), ("avif444", 50)):
        codec = get_codec(name)
        data = codec.encode(pixels, setting)
        decoded = codec.decode(data)
        table.add_row(
            codec.label or name, str(setting), str(len(data)),
            f"{bits_per_pixel(len(data), height, width):.3f}",
            f"{psnr(pixels, decoded):.2f}", f"{ms_ssim(pixels, decoded):.4f}",
        )
    console.print(table)
