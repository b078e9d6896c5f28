"""Encoding to a size: the largest file not above a byte or bits-per-pixel budget.

A learned codec's quality levels give sizes that vary several-fold between photos, so a user who
needs a size (cwebp's ``-size``, a page-weight budget) names the size instead. The search runs the
ordinary encoder on a small set of candidate settings and keeps the largest file within budget:

* every quality level with the low-pass layer left out (the smallest file of each quality) and
  with the encoder's own per-image choice (``lowpass="auto"``);
* for the highest quality whose smallest file fits, every fixed low-pass setting of the search
  grid (:data:`imgcomp.postfilter.lowpass.BLOCK_SIZES` x :data:`~imgcomp.postfilter.lowpass.SEARCH_STEPS`), which fills
  the gap between that quality's smallest file and the next quality's.

Every candidate is a real file, so the size is exact. Without refinement the system's payload does
not depend on the low-pass layer, so each quality is encoded once and only the low-pass section
varies (:func:`imgcomp.api.encode_variants`): one encode per quality plus 2 + 15 low-pass fits.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from imgcomp.api import EncodeResult, encode_variants
from imgcomp.errors import ImgcompError
from imgcomp.io import ImageSource, load_image, read_metadata
from imgcomp.postfilter.lowpass import AUTO, BLOCK_SIZES, SEARCH_STEPS, LowpassSettings
from imgcomp.models.export import LoadedModel
from imgcomp.zoo import get_model


@dataclass
class TargetResult:
    """The chosen file, the budget it met and how many candidate files the search made."""

    result: EncodeResult
    max_bytes: int
    encodes: int
    smallest_bytes: int  # the smallest file any candidate gave
    largest_bytes: int  # the largest file any candidate gave

    @property
    def quality(self) -> int:
        return self.result.quality

    @property
    def lowpass(self) -> LowpassSettings | None:
        return self.result.lowpass


def budget_bytes(height: int, width: int, max_bytes: int | None = None, max_bpp: float | None = None) -> int:
    """The byte budget from exactly one of a size in bytes or in bits per pixel."""
    if (max_bytes is None) == (max_bpp is None):
        raise ImgcompError("give exactly one of a target size in bytes or in bits per pixel")
    if max_bpp is not None:
        if not (math.isfinite(max_bpp) and max_bpp > 0):
            raise ImgcompError(f"target bpp must be a positive number, got {max_bpp}")
        return int(max_bpp * height * width // 8)
    if max_bytes <= 0:
        raise ImgcompError(f"target size must be a positive number of bytes, got {max_bytes}")
    return int(max_bytes)


def encode_to_target(
    image: ImageSource, *, max_bytes: int | None = None, max_bpp: float | None = None,
    model: str | os.PathLike | LoadedModel | None = None, keep_metadata: bool = False,
) -> TargetResult:
    """Encode ``image`` as the largest file of the candidate settings (module docstring) that is
    not above ``max_bytes`` (or ``max_bpp`` bits per pixel, file bytes counted). A budget below
    the smallest candidate raises :class:`~imgcomp.errors.ImgcompError` naming the smallest and
    largest sizes this image can have. With ``keep_metadata`` the metadata section counts too."""
    loaded = get_model(model)
    pixels = load_image(image)
    metadata = read_metadata(image) if keep_metadata else {}
    height, width = pixels.shape[:2]
    budget = budget_bytes(height, width, max_bytes, max_bpp)
    qualities = range(1, loaded.system.qualities(loaded) + 1)
    results: list[EncodeResult] = []
    smallest = {}
    for quality in qualities:
        without, auto = encode_variants(pixels, quality, loaded, [None, AUTO], metadata)
        results += [without, auto]
        smallest[quality] = len(without.data)
    fitting = [quality for quality in qualities if smallest[quality] <= budget]
    if fitting:
        grid = [LowpassSettings(block, step) for block in BLOCK_SIZES for step in SEARCH_STEPS]
        results += encode_variants(pixels, max(fitting), loaded, grid, metadata)
    sizes = [len(result.data) for result in results]
    within = [result for result in results if len(result.data) <= budget]
    if not within:
        raise ImgcompError(
            f"no file of this image fits in {budget} bytes ({8 * budget / (height * width):.4f} bpp): "
            f"the smallest is {min(sizes)} bytes, the largest {max(sizes)} bytes"
        )
    # Largest file wins; among equal sizes the higher quality, then the first tried.
    best = max(within, key=lambda result: (len(result.data), result.quality))
    return TargetResult(best, budget, len(results), min(sizes), max(sizes))
