"""The payload's symbol layout of Rippel & Bourdev (2017) streams and pulling the symbols back:
what both decoders (torch, :mod:`.stream`; numpy, :mod:`.decoder_numpy`) share. numpy only.

Stream version 1: the symbols (C, h, w) of the padded image (a multiple of ``2^(M-1)``) at
``1/2^target_scale`` of its size, as bitplanes range-coded with the bit contexts of
:mod:`.bit_context`; the image size and quality come from the container.
"""

from __future__ import annotations

import numpy as np

from imgcomp.entropy import SymbolDecoder
from imgcomp.errors import ImgcompError
from imgcomp.systems.rippel2017 import bit_context
from imgcomp.systems.rippel2017.tags import STREAM_VERSIONS

STREAM_VERSION = 1
READABLE_STREAM_VERSIONS = STREAM_VERSIONS


def check_version(stream_version: int | None) -> int:
    """``stream_version`` (the current one for None), or a clear error for one this imgcomp cannot read."""
    if stream_version is None:
        return STREAM_VERSION
    if stream_version not in READABLE_STREAM_VERSIONS:
        raise ImgcompError(
            f"rippel2017 stream version {stream_version} is not known to this imgcomp (it reads "
            f"{', '.join(map(str, READABLE_STREAM_VERSIONS))})")
    return stream_version


def latent_shape(config, height: int, width: int) -> tuple[int, int, int]:
    """(C, h, w) of an image's symbols (the padded image over the latent stride)."""
    pad = config.pad_multiple
    padded_h, padded_w = -(-height // pad) * pad, -(-width // pad) * pad
    return config.latent_channels, padded_h // config.latent_stride, padded_w // config.latent_stride


def pull_symbols(config, table: bit_context.CodingTable, payload: bytes, width: int, height: int, quality: int) -> np.ndarray:
    """The symbols (C, h, w) int64 of a payload at ``quality`` (1-based), exactly as coded."""
    return bit_context.decode(config, table, latent_shape(config, height, width), quality - 1, SymbolDecoder(payload))
