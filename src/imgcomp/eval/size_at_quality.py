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


def size_at_quality(sizes: Sequence[float], quality: Sequence[float | None], level: float) -> float | None:
    """Interpolated file size at ``level``; ``None`` outside the measured quality range."""
    sizes_kept, quality_kept = monotone_points(sizes, quality)
    if len(sizes_kept) == 0 or not quality_kept[0] <= level <= quality_kept[-1]:
        return None
    if len(sizes_kept) == 1:
        return float(sizes_kept[0])
    return float(np.exp(np.interp(level, quality_kept, np.log(sizes_kept))))


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
