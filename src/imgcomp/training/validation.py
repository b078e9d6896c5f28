"""BD-rate against JPEG 4:2:0 on the validation images, while a model trains.

``imgcomp eval`` + ``imgcomp report`` give the figures we publish; they encode real files. A run
validated every few hundred steps needs the same kind of number cheaply, to select models and to
show how far a run has come ("validation BD-rate over training steps"). The task gives, for every
validation image, one (bpp, MS-SSIM, PSNR) point per quality; bpp is usually the model's
estimate (eq. 13 of Mentzer et al.: the context model's cost), which real files exceed by their
headers only. The anchor is JPEG 4:2:0 (libjpeg-turbo through Pillow, the ``jpeg420`` codec of
``imgcomp eval``, its whole quality sweep) on the same images, computed once per process. BD-rates
are per image, pchip, averaged over images, exactly as :mod:`imgcomp.eval.bdrate` does for reports;
MS-SSIM in dB (``-10 log10(1 - MS-SSIM)``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from imgcomp.eval.bdrate import bd_rates
from imgcomp.metrics import ms_ssim, ms_ssim_db, psnr

ANCHOR = "jpeg420"

_anchor_cache: dict[str, list["RatePoint"]] = {}  # by image content


class RatePoint(NamedTuple):
    """One coded image at one quality."""

    bpp: float
    ms_ssim: float
    psnr: float


def _fingerprint(image: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()[:16] + f"{image.shape}"


def jpeg_points(image: np.ndarray) -> list[RatePoint]:
    """JPEG 4:2:0 at every setting of ``imgcomp eval``'s sweep (whole-file bpp)."""
    from imgcomp.codecs import get_codec

    codec = get_codec(ANCHOR)
    pixels = image.shape[0] * image.shape[1]
    points = []
    for setting in codec.default_settings:
        data = codec.encode(image, setting)
        decoded = codec.decode(data)
        points.append(RatePoint(8 * len(data) / pixels, ms_ssim(image, decoded, allow_fewer_scales=True), psnr(image, decoded)))
    return points


def anchor_points(images: Sequence[np.ndarray]) -> list[list[RatePoint]]:
    """:func:`jpeg_points` of every image, cached by the images' content."""
    result = []
    for image in images:
        key = _fingerprint(image)
        if key not in _anchor_cache:
            _anchor_cache[key] = jpeg_points(image)
        result.append(_anchor_cache[key])
    return result


def bd_rates_vs_jpeg(images: Sequence[np.ndarray], points: Sequence[Sequence[RatePoint]]) -> dict[str, float]:
    """``val_bd_ms_ssim_vs_jpeg420`` and ``val_bd_psnr_vs_jpeg420`` (percent; negative: fewer bits
    than JPEG for the same quality) of a model whose image ``i`` gave ``points[i]`` (one point per
    quality), and how many images each mean covers (images whose curves do not overlap JPEG's are
    left out, as in reports)."""
    if len(images) != len(points):
        raise ValueError("one list of points per validation image")
    anchors = anchor_points(images)
    results: dict[str, float] = {}
    for metric, value in (("ms_ssim", lambda p: ms_ssim_db(p.ms_ssim)), ("psnr", lambda p: p.psnr)):
        anchor = {str(i): ([p.bpp for p in a], [value(p) for p in a]) for i, a in enumerate(anchors)}
        test = {str(i): ([p.bpp for p in t], [value(p) for p in t]) for i, t in enumerate(points)}
        bd = bd_rates(anchor, test, "model", metric)
        if bd.mean is not None:
            results[f"val_bd_{metric}_vs_{ANCHOR}"] = bd.mean
        results[f"val_bd_{metric}_images"] = float(len(bd.per_image))
    return results
