"""File size at fixed quality, relative to a reference codec (Rippel & Bourdev 2017, sec. 5 and
Table 1: "average compressed file sizes relative to ours as function of the MS-SSIM fixed for
each image").

Per image, the file size is interpolated at each quality level (log-size linear in quality along
the points where quality strictly increases with size; no extrapolation). For each codec and
level, sizes are averaged over the images where both the codec and the reference reach the level,
and the relative size is mean(codec) / mean(reference) over those same images.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from imgcomp.eval.curves import monotone_points

DEFAULT_LEVELS = (0.90, 0.95, 0.97, 0.98, 0.99, 0.995)


def _interpolate(known: np.ndarray, wanted: np.ndarray, at: float) -> float | None:
    """``wanted`` at ``at`` along increasing ``known``, linearly; ``None`` outside its range."""
    if len(known) == 0 or not known[0] <= at <= known[-1]:
        return None
    return float(wanted[0]) if len(known) == 1 else float(np.interp(at, known, wanted))


def size_at_quality(sizes: Sequence[float], quality: Sequence[float | None], level: float) -> float | None:
    """Interpolated file size at ``level`` (log-size linear in quality); ``None`` outside the
    measured quality range."""
    sizes_kept, quality_kept = monotone_points(sizes, quality)
    log_size = _interpolate(quality_kept, np.log(sizes_kept), level)
    return None if log_size is None else float(np.exp(log_size))


@dataclass(frozen=True)
class RelativeSize:
    """One table cell: mean size in bytes of codec and reference at a level, over ``images``."""

    level: float
    mean_bytes: float | None
    reference_mean_bytes: float | None
    images: int

    @property
    def relative(self) -> float | None:
        if not self.images or not self.reference_mean_bytes:
            return None
        return self.mean_bytes / self.reference_mean_bytes

    def to_dict(self) -> dict[str, object]:
        return {
            "level": self.level,
            "mean_bytes": self.mean_bytes,
            "reference_mean_bytes": self.reference_mean_bytes,
            "relative": self.relative,
            "images": self.images,
        }


def relative_sizes(
    reference: Mapping[str, tuple[Sequence[float], Sequence[float | None]]],
    codec: Mapping[str, tuple[Sequence[float], Sequence[float | None]]],
    levels: Sequence[float] = DEFAULT_LEVELS,
    min_images: int = 1,
) -> list[RelativeSize]:
    """One :class:`RelativeSize` per level; inputs are ``{image: (bytes, quality)}``.

    Levels reached by fewer than ``min_images`` common images are left empty.
    """
    cells = []
    for level in levels:
        pairs = []
        for image in sorted(set(reference) & set(codec)):
            ref_size = size_at_quality(*reference[image], level)
            size = size_at_quality(*codec[image], level)
            if ref_size is not None and size is not None:
                pairs.append((size, ref_size))
        if len(pairs) < max(1, min_images):
            cells.append(RelativeSize(level, None, None, 0))
            continue
        sizes, ref_sizes = np.array(pairs).T
        cells.append(RelativeSize(level, float(sizes.mean()), float(ref_sizes.mean()), len(pairs)))
    return cells


@dataclass(frozen=True)
class OperatingPoint:
    """One setting of a codec against the reference, at the codec's own rate and quality.

    For codecs with too few settings for a BD-rate (a single-rate model has one point per image):
    ``quality_gain`` is the mean over images of (codec quality - reference quality at the same
    file size), and ``relative_size`` the mean file size divided by the reference's mean size at
    the same quality, as in :func:`relative_sizes`. Each is over the images where the reference's
    measured range covers the point (no extrapolation).
    """

    setting: float
    mean_bpp: float
    quality_gain: float | None
    gain_images: int
    relative_size: float | None
    size_images: int

    def to_dict(self) -> dict[str, object]:
        return {
            "setting": self.setting,
            "mean_bpp": self.mean_bpp,
            "quality_gain": self.quality_gain,
            "gain_images": self.gain_images,
            "relative_size": self.relative_size,
            "size_images": self.size_images,
        }


def quality_at_size(sizes: Sequence[float], quality: Sequence[float | None], size: float) -> float | None:
    """Quality interpolated at file size ``size`` (linear in log-size); ``None`` outside the range."""
    sizes_kept, quality_kept = monotone_points(sizes, quality)
    return _interpolate(np.log(sizes_kept), quality_kept, float(np.log(size)))


def operating_points(
    reference: Mapping[str, tuple[Sequence[float], Sequence[float | None]]],
    codec: Mapping[str, Mapping[float, tuple[float, float, float | None]]],
) -> list[OperatingPoint]:
    """One :class:`OperatingPoint` per setting of ``codec``.

    ``reference`` is ``{image: (bytes, quality)}``; ``codec`` is
    ``{image: {setting: (bytes, bpp, quality)}}``.
    """
    settings = sorted({s for by_setting in codec.values() for s in by_setting})
    rows = []
    for setting in settings:
        bpps, gains, sizes = [], [], []
        for image in sorted(codec):
            if setting not in codec[image]:
                continue
            size, bpp, quality = codec[image][setting]
            bpps.append(bpp)
            if image not in reference or quality is None:
                continue
            reference_quality = quality_at_size(*reference[image], size)
            if reference_quality is not None:
                gains.append(quality - reference_quality)
            reference_size = size_at_quality(*reference[image], quality)
            if reference_size is not None:
                sizes.append((size, reference_size))
        rows.append(OperatingPoint(
            setting=setting,
            mean_bpp=float(np.mean(bpps)),
            quality_gain=float(np.mean(gains)) if gains else None,
            gain_images=len(gains),
            relative_size=float(np.mean([s for s, _ in sizes]) / np.mean([r for _, r in sizes])) if sizes else None,
            size_images=len(sizes),
        ))
    return rows
