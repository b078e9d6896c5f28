"""Rate-distortion plots of a report (matplotlib, Agg backend: no display needed).

Reads a :class:`~imgcomp.eval.report.Report` without importing its module (which imports this
one to draw): the report module depends on the plots, never the reverse."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

if TYPE_CHECKING:  # for annotations only
    from imgcomp.eval.report import Report

_COLORS = {
    "jpeg420": "#000000",
    "jpeg444": "#7f7f7f",
    "jpeg2000": "#8c564b",
    "webp": "#2ca02c",
    "heic444": "#1f77b4",
    "avif444": "#d62728",
    "jpegxl": "#9467bd",
}
_SPARE_COLORS = ["#ff7f0e", "#17becf", "#e377c2", "#bcbd22", "#393b79", "#637939"]
PLOT_MAX_BPP = 2.0


def codec_colors(codecs: list[str]) -> dict[str, str]:
    """A fixed colour per baseline codec; others (learned codecs) get distinct spare colours."""
    spare = iter(_SPARE_COLORS * 4)
    return {codec: _COLORS.get(codec) or next(spare) for codec in codecs}


def rd_figure(report: Report, metric: str, max_bpp: float = PLOT_MAX_BPP) -> Figure:
    """Average ``metric`` (``"ms_ssim"`` on a dB axis, ``"psnr"`` or ``"lpips"``, lower is better)
    against bpp, one line per codec; legend entries carry the BD-rate against the reference."""
    figure = plt.figure(figsize=(7.5, 5.2), dpi=130)
    axes = figure.add_subplot(1, 1, 1)
    curves = report.curves.get(metric, {})
    colors = codec_colors(report.codecs)
    bd_metric = "ms_ssim_db" if metric == "ms_ssim" else metric
    lows, highs = [], []
    for codec in report.codecs:
        curve = curves.get(codec)
        if curve is None or len(curve.bpp) == 0:
            continue
        values = curve.mean if metric != "ms_ssim" else _ms_ssim_to_db(curve.mean)
        visible = curve.bpp <= max_bpp
        if visible.any():
            lows.append(values[visible].min())
            highs.append(values[visible].max())
        label = report.label(codec)
        if codec == report.reference:
            label += " (reference)"
        elif bd_metric in report.bd_rates and report.bd_rates[bd_metric][codec].mean is not None:
            label += f" ({report.bd_rates[bd_metric][codec].mean:+.0f}%)"
        style = {
            "color": colors[codec],
            "linestyle": "--" if codec == report.reference else "-",
        }
        # Solid where every image covers the rate; thin where the mean is over a subset (images
        # drop out past the ends of their measured range, which makes the mean jump).
        full = curve.count == curve.images
        axes.plot(curve.bpp, values, linewidth=0.9, alpha=0.55, **style)
        axes.plot(
            curve.bpp,
            np.where(full, values, np.nan),
            linewidth=2.4 if codec == report.reference else 1.9,
            label=label,
            **style,
        )
    title = {"ms_ssim": "MS-SSIM", "lpips": "LPIPS"}.get(metric, "PSNR")
    axes.set_title(
        f"{title} vs rate, average over {len(report.images)} images "
        f"(BD-rate vs {report.label(report.reference)} in legend)",
        fontsize=10,
    )
    axes.set_xlabel(
        "rate (bits per pixel, whole file); thin lines: mean over only the images covering that rate"
    )
    axes.set_xlim(0, max_bpp)
    if metric == "ms_ssim":
        axes.set_ylabel("MS-SSIM (dB) = -10 log10(1 - MS-SSIM)")
        secondary = axes.secondary_yaxis(
            "right",
            functions=(_db_to_ms_ssim, _ms_ssim_to_db),
        )
        secondary.set_ylabel("MS-SSIM")
        secondary.set_yticks([0.8, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995])
    elif metric == "lpips":
        axes.set_ylabel(f"LPIPS (ST-LPIPS {report.lpips_net}), lower is better")
    else:
        axes.set_ylabel("PSNR (dB, RGB)")
    if lows:
        pad = 0.03 * (max(highs) - min(lows)) or 1.0
        axes.set_ylim(min(lows) - pad, max(highs) + pad)
    else:
        axes.text(0.5, 0.5, f"no {title} values", transform=axes.transAxes, ha="center")
    axes.grid(True, which="major", alpha=0.4)
    axes.minorticks_on()
    axes.grid(True, which="minor", alpha=0.12)
    if axes.lines:
        axes.legend(loc="upper right" if metric == "lpips" else "lower right", fontsize=9, framealpha=0.9)
    figure.tight_layout()
    return figure


def _db_to_ms_ssim(db):
    return 1 - 10 ** (-np.asarray(db, dtype=float) / 10)


def _ms_ssim_to_db(value):
    return -10 * np.log10(np.clip(1 - np.asarray(value, dtype=float), 1e-12, None))


def figure_bytes(figure: Figure, fmt: str) -> bytes:
    """Render a figure to PNG or SVG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format=fmt, metadata={"Software": None} if fmt == "png" else {"Date": None})
    return buffer.getvalue()


def close(figure: Figure) -> None:
    """Release a figure's memory."""
    plt.close(figure)
