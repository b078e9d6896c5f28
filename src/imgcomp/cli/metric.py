"""CLI command ``metric``: PSNR, MS-SSIM and LPIPS of two images, as the butteraugli and
ssimulacra2 tools print theirs; and ``metric --fetch-weights`` to set up the LPIPS weights."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

import typer

from imgcomp.errors import ImgcompError


def register(app: typer.Typer) -> None:
    """Add this module's command to the main app."""
    app.command("metric")(metric_command)


def _finite(value: float | None) -> float | None:
    return None if value is None or math.isinf(value) else value


def measure(a_path: Path, b_path: Path, net: str = "alex", variant: str = "shift_tolerant",
            backbone: Path | None = None) -> dict:
    """The record ``imgcomp metric`` prints: sizes, PSNR, MS-SSIM and LPIPS (``net`` 'none': no
    LPIPS). MS-SSIM on images under 161 pixels a side uses fewer scales (``ms_ssim_scales``)."""
    from imgcomp.io import load_image
    from imgcomp.lpips import lpips
    from imgcomp.metrics import ms_ssim, ms_ssim_db, ms_ssim_scales, psnr

    a, b = load_image(a_path), load_image(b_path)
    if a.shape != b.shape:
        raise ImgcompError(f"images differ in size: {a.shape[1]}x{a.shape[0]} ({a_path}) vs "
                           f"{b.shape[1]}x{b.shape[0]} ({b_path})")
    height, width = a.shape[:2]
    record: dict = {"a": str(a_path), "b": str(b_path), "width": width, "height": height,
                    "psnr": psnr(a, b)}
    scales = ms_ssim_scales(height, width)
    record["ms_ssim"] = ms_ssim(a, b, allow_fewer_scales=True) if scales >= 2 else None
    record["ms_ssim_db"] = None if record["ms_ssim"] is None else ms_ssim_db(record["ms_ssim"])
    record["ms_ssim_scales"] = scales if scales >= 2 else 0
    if net != "none":
        record["lpips"] = lpips(a, b, net, variant, backbone=backbone)
        record["lpips_net"], record["lpips_variant"] = net, variant
    return record


def _text(record: dict) -> str:
    lines = [f"psnr      {record['psnr']:.4f} dB" if not math.isinf(record["psnr"]) else "psnr      inf"]
    if record["ms_ssim"] is None:
        lines.append("ms_ssim   n/a (image too small)")
    else:
        scales = "" if record["ms_ssim_scales"] == 5 else f" ({record['ms_ssim_scales']} scales)"
        lines.append(f"ms_ssim   {record['ms_ssim']:.6f} ({record['ms_ssim_db']:.3f} dB){scales}")
    if "lpips" in record:
        tag = "ST-LPIPS" if record["lpips_variant"] == "shift_tolerant" else "LPIPS v0.1"
        lines.append(f"lpips     {record['lpips']:.6f} ({tag} {record['lpips_net']})")
    return "\n".join(lines)


def metric_command(
    a: Optional[Path] = typer.Argument(None, help="Reference image (PNG, JPEG, ...)."),
    b: Optional[Path] = typer.Argument(None, help="Distorted image, same size."),
    lpips_net: str = typer.Option("alex", "--lpips", help="LPIPS backbone: alex, vgg or none."),
    variant: str = typer.Option(
        "shift_tolerant", "--lpips-variant",
        help="shift_tolerant (ST-LPIPS, weights fetched from the pinned stlpips-pytorch wheel) or "
             "original (LPIPS v0.1; needs --lpips-backbone)."),
    backbone: Optional[Path] = typer.Option(
        None, "--lpips-backbone",
        help="Local torchvision ImageNet weights of the backbone, for --lpips-variant original."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object (PSNR inf as null)."),
    fetch: bool = typer.Option(
        False, "--fetch-weights",
        help="Download the ST-LPIPS weights (pip download of stlpips-pytorch 0.0.2, SHA-256 "
             "checked) into the cache ($IMGCOMP_LPIPS_DIR or ~/.cache/imgcomp/lpips) and exit."),
    wheel: Optional[Path] = typer.Option(
        None, "--wheel", help="With --fetch-weights: use this local copy of the wheel instead."),
) -> None:
    """PSNR, MS-SSIM and LPIPS (ST-LPIPS AlexNet by default) of image B against image A."""
    from imgcomp.lpips import NETS, VARIANTS, fetch_weights

    if fetch:
        if a is not None or b is not None:
            raise ImgcompError("--fetch-weights takes no images")
        folder = fetch_weights(wheel=wheel, force=wheel is not None)
        typer.echo(f"ST-LPIPS weights in {folder}")
        return
    if wheel is not None:
        raise ImgcompError("--wheel goes with --fetch-weights")
    if a is None or b is None:
        raise ImgcompError("give two images: imgcomp metric A B")
    if lpips_net not in (*NETS, "none"):
        raise ImgcompError(f"--lpips must be one of {', '.join(NETS)}, none; got {lpips_net!r}")
    if variant not in VARIANTS:
        raise ImgcompError(f"--lpips-variant must be one of {', '.join(VARIANTS)}; got {variant!r}")
    record = measure(a, b, lpips_net, variant, backbone)
    if json_output:
        typer.echo(json.dumps({k: _finite(v) if isinstance(v, float) else v for k, v in record.items()}))
    else:
        typer.echo(_text(record))
