"""Rate-distortion curves per image, and their average over images the way the papers do it.

Mentzer et al. (2018, sec. 4, "Comparison"), following Rippel & Bourdev (2017, sec. 5): interpolate
each image's (bpp, metric) points to a curve, fix a grid of bpp values, and average the curves at
each grid value over the images whose measured bpp range includes it (no extrapolation). Grid
points covered by too few images are dropped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from imgcomp.errors import ImgcompError


@dataclass(frozen=True)
class RDCurve:
    """One image's measured points, sorted by strictly increasing bpp."""

    bpp: np.ndarray
    values: np.ndarray

    def __len__(self) -> int:
        return len(self.bpp)

    def interpolate(self, grid: np.ndarray) -> np.ndarray:
        """Piecewise-linear values at ``grid``; NaN outside ``[bpp.min(), bpp.max()]``."""
        grid = np.asarray(grid, dtype=float)
        out = np.full(grid.shape, np.nan)
        if len(self) == 0:
            return out
        inside = (grid >= self.bpp[0]) & (grid <= self.bpp[-1])
        if len(self) == 1:
            out[inside] = self.values[0]
        else:
            out[inside] = np.interp(grid[inside], self.bpp, self.values)
        return out


def rd_curve(bpp: Sequence[float], values: Sequence[float | None]) -> RDCurve:
    """Build a curve from raw points: drop missing/non-finite values, sort by bpp, and keep the
    best value where several points share one bpp."""
    best: dict[float, float] = {}
    for rate, value in zip(bpp, values):
        if value is None or rate is None or not math.isfinite(value) or not math.isfinite(rate):
            continue
        best[float(rate)] = max(float(value), best.get(float(rate), -math.inf))
    rates = np.array(sorted(best), dtype=float)
    return RDCurve(rates, np.array([best[r] for r in rates], dtype=float))


def monotone_points(bpp: Sequence[float], values: Sequence[float | None]) -> tuple[np.ndarray, np.ndarray]:
    """The points of a curve along which quality strictly increases with rate.

    A point that costs more bits than another but is not better is dominated; BD-rate and
    size-at-quality interpolate rate as a function of quality, which needs this ordering.
    """
    curve = rd_curve(bpp, values)
    kept_rates, kept_values = [], []
    for rate, value in zip(curve.bpp, curve.values):
        if not kept_values or value > kept_values[-1]:
            kept_rates.append(rate)
            kept_values.append(value)
    return np.array(kept_rates), np.array(kept_values)


@dataclass(frozen=True)
class AverageCurve:
    """Mean over images at each kept grid point, with how many images covered it."""

    bpp: np.ndarray
    mean: np.ndarray
    count: np.ndarray
    images: int

    def to_dict(self) -> dict[str, object]:
        return {
            "bpp": [round(float(x), 6) for x in self.bpp],
            "mean": [round(float(x), 6) for x in self.mean],
            "count": [int(x) for x in self.count],
            "images": self.images,
        }


def bpp_grid(curves: Sequence[RDCurve], points: int = 120) -> np.ndarray:
    """A geometric grid spanning every curve's measured bpp range."""
    rates = np.concatenate([c.bpp for c in curves if len(c)]) if curves else np.array([])
    rates = rates[rates > 0]
    if rates.size == 0:
        raise ImgcompError("no rate-distortion points to build a bpp grid from")
    low, high = float(rates.min()), float(rates.max())
    if high <= low:
        return np.array([low])
    return np.geomspace(low, high, points)


def average_curve(curves: Sequence[RDCurve], grid: np.ndarray, min_coverage: float = 0.5) -> AverageCurve:
    """Average ``curves`` at ``grid``, each grid point over the images that cover it.

    A grid point is kept when at least ``min_coverage`` of the images cover it (and at least one).
    """
    if not 0 <= min_coverage <= 1:
        raise ImgcompError(f"min_coverage must be in [0, 1], got {min_coverage}")
    grid = np.asarray(grid, dtype=float)
    if not curves:
        return AverageCurve(grid[:0], grid[:0], np.zeros(0, dtype=int), 0)
    table = np.vstack([curve.interpolate(grid) for curve in curves])
    covered = ~np.isnan(table)
    count = covered.sum(axis=0)
    keep = count >= max(1.0, min_coverage * len(curves))
    sums = np.where(covered, table, 0.0).sum(axis=0)
    mean = np.divide(sums, count, out=np.full(grid.shape, np.nan), where=count > 0)
    return AverageCurve(grid[keep], mean[keep], count[keep], len(curves))
