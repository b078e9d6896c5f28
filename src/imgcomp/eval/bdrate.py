"""Bjontegaard-delta rate per image, averaged over images.

BD-rate (Bjontegaard, VCEG-M33, 2001) is the average relative rate difference of a test codec
against an anchor at equal quality, over the quality range both cover. We use the ``bjontegaard``
package with piecewise cubic Hermite (pchip) interpolation of log-rate over quality, per image,
and average the per-image percentages; images where the two curves do not overlap are excluded
and named.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import bjontegaard
import numpy as np

from imgcomp.eval.curves import monotone_points


@dataclass
class BDRate:
    """BD-rate of one codec against the anchor in one metric."""

    codec: str
    metric: str
    mean: float | None
    per_image: dict[str, float] = field(default_factory=dict)
    excluded: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {
            "codec": self.codec,
            "metric": self.metric,
            "mean_percent": self.mean,
            "images": len(self.per_image),
            "per_image_percent": self.per_image,
            "excluded": self.excluded,
        }


def bd_rate_percent(
    anchor_bpp: Sequence[float],
    anchor_quality: Sequence[float | None],
    test_bpp: Sequence[float],
    test_quality: Sequence[float | None],
) -> tuple[float | None, str]:
    """BD-rate in percent of one test curve against one anchor curve (negative: test saves bits).

    Returns ``(value, "")`` or ``(None, reason)`` when it cannot be computed.
    """
    anchor_rates, anchor_values = monotone_points(anchor_bpp, anchor_quality)
    test_rates, test_values = monotone_points(test_bpp, test_quality)
    if len(anchor_rates) < 2 or len(test_rates) < 2:
        return None, "fewer than 2 usable points"
    low = max(anchor_values[0], test_values[0])
    high = min(anchor_values[-1], test_values[-1])
    if high <= low:
        return None, (
            f"no quality overlap (anchor {anchor_values[0]:.2f}..{anchor_values[-1]:.2f}, "
            f"test {test_values[0]:.2f}..{test_values[-1]:.2f})"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = bjontegaard.bd_rate(
            anchor_rates,
            anchor_values,
            test_rates,
            test_values,
            method="pchip",
            require_matching_points=False,
            min_overlap=0,
        )
    value = float(value)
    if not np.isfinite(value):
        return None, "BD-rate is not finite"
    return value, ""


def bd_rates(
    anchor: Mapping[str, tuple[Sequence[float], Sequence[float | None]]],
    test: Mapping[str, tuple[Sequence[float], Sequence[float | None]]],
    codec: str,
    metric: str,
) -> BDRate:
    """Per-image BD-rates of ``test`` against ``anchor`` (both ``{image: (bpp, quality)}``), and
    their mean over the images where it could be computed."""
    result = BDRate(codec=codec, metric=metric, mean=None)
    for image in sorted(set(anchor) | set(test)):
        if image not in anchor:
            result.excluded[image] = "no anchor results"
            continue
        if image not in test:
            result.excluded[image] = "no results"
            continue
        value, reason = bd_rate_percent(*anchor[image], *test[image])
        if value is None:
            result.excluded[image] = reason
        else:
            result.per_image[image] = value
    if result.per_image:
        result.mean = float(np.mean(list(result.per_image.values())))
    return result
