"""Side-by-side reconstructions at (about) the same rate, as in Rippel & Bourdev (2017, Figure 1):
each codec at the setting of its sweep whose bpp is closest to a target."""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imgcomp.codecs import Codec, available_codecs, get_codec
from imgcomp.errors import ImgcompError
from imgcomp.io import check_writable, load_image, write_atomic
from imgcomp.metrics import bits_per_pixel, ms_ssim, psnr

FIGURE_FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
DEFAULT_CROP_SIZE = (384, 256)


@dataclass(frozen=True)
class Reconstruction:
    """One codec's decoded image at the chosen setting, with whole-image rate and quality."""

    codec: str
    label: str
    setting: float | int
    setting_name: str
    bpp: float
    psnr: float
    ms_ssim: float | None
    image: np.ndarray


def closest_to_rate(codec: Codec, image: np.ndarray, target_bpp: float) -> Reconstruction:
    """Encode ``image`` at every setting of ``codec``'s sweep; keep the one nearest ``target_bpp``."""
    height, width = image.shape[:2]
    best = None
    for setting in codec.default_settings:
        data = codec.encode(image, setting)
        bpp = bits_per_pixel(len(data), height, width)
        if best is None or abs(bpp - target_bpp) < abs(best[1] - target_bpp):
            best = (setting, bpp, data)
    if best is None:
        raise ImgcompError(f"{codec.name}: has no settings to choose from")
    setting, bpp, data = best
    decoded = codec.decode(data)
    try:
        quality = ms_ssim(image, decoded)
    except ImgcompError:
        quality = None  # under 161 px a side
    return Reconstruction(
        codec.name,
        codec.label or codec.name,
        setting,
        codec.setting_name,
        bpp,
        psnr(image, decoded),
        quality,
        decoded,
    )


def parse_crop(text: str | None, width: int, height: int) -> tuple[int, int, int, int]:
    """``"x,y,w,h"`` (pixels) checked against the image; ``None`` gives a centred default crop."""
    if text is None:
        w, h = min(width, DEFAULT_CROP_SIZE[0]), min(height, DEFAULT_CROP_SIZE[1])
        return (width - w) // 2, (height - h) // 2, w, h
    try:
        x, y, w, h = (int(part) for part in text.split(","))
    except ValueError:
        raise ImgcompError(f"--crop {text!r}: expected four integers x,y,w,h") from None
    if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > width or y + h > height:
        raise ImgcompError(f"--crop {text!r}: outside the {width}x{height} image")
    return x, y, w, h


def compare_figure(original: np.ndarray, reconstructions: Sequence[Reconstruction], crop, target_bpp: float):
    """A grid of crops: the original, then every reconstruction titled with codec, bpp, PSNR and
    MS-SSIM (both measured on the whole image)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x, y, w, h = crop
    panels = [("Original", "", original)] + [
        (
            f"{r.label} ({r.setting_name} {r.setting:g})",
            f"{r.bpp:.3f} bpp, {r.psnr:.2f} dB, MS-SSIM "
            + ("n/a" if r.ms_ssim is None else f"{r.ms_ssim:.4f}"),
            r.image,
        )
        for r in reconstructions
    ]
    columns = min(4, len(panels))
    rows = math.ceil(len(panels) / columns)
    panel_inches = 3.6
    aspect = h / w
    figure, axes_grid = plt.subplots(
        rows, columns, figsize=(columns * panel_inches, rows * (panel_inches * aspect + 0.55)), squeeze=False
    )
    for axes in axes_grid.flat:
        axes.axis("off")
    for axes, (title, subtitle, array) in zip(axes_grid.flat, panels):
        axes.imshow(array[y : y + h, x : x + w], interpolation="nearest")
        axes.set_title(f"{title}\n{subtitle}" if subtitle else title, fontsize=8.5)
    height, width = original.shape[:2]
    figure.suptitle(
        f"Target {target_bpp:g} bpp: each codec at its closest setting. Crop x={x}, y={y}, {w}x{h} "
        f"of {width}x{height}; bpp, PSNR and MS-SSIM on the whole image.",
        fontsize=9,
    )
    figure.tight_layout()
    return figure


def write_comparison(
    image_path: str | os.PathLike,
    target_bpp: float,
    out: str | os.PathLike,
    codecs: Sequence[str] | None = None,
    crop: str | None = None,
    *,
    force: bool = False,
) -> list[Reconstruction]:
    """Build the comparison figure of ``image_path`` at ``target_bpp`` and write it to ``out``
    (format from the suffix: .png, .svg or .pdf)."""
    out = Path(out)
    fmt = FIGURE_FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise ImgcompError(f"{out}: figure suffix must be one of {', '.join(FIGURE_FORMATS)}")
    check_writable([out], force)
    if not (math.isfinite(target_bpp) and target_bpp > 0):
        raise ImgcompError(f"--bpp must be a positive number, got {target_bpp}")
    names = list(codecs) if codecs else available_codecs(baseline_only=True)
    selected = [get_codec(name) for name in names]
    image = load_image(image_path)
    region = parse_crop(crop, image.shape[1], image.shape[0])
    reconstructions = [closest_to_rate(codec, image, target_bpp) for codec in selected]
    import matplotlib.pyplot as plt

    figure = compare_figure(image, reconstructions, region, target_bpp)
    buffer = io.BytesIO()
    figure.savefig(buffer, format=fmt, dpi=150)
    plt.close(figure)
    write_atomic(out, lambda handle: handle.write(buffer.getvalue()), overwrite=force)
    return reconstructions
