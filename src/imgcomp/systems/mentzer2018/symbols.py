"""The symbol volume's layout in a Mentzer et al. payload, and pulling it with the integer-exact P:
what both decoders (torch, :mod:`.stream`; numpy, :mod:`.decoder_numpy`) share. numpy only.

The payload starts with ``K'``, the number of leading channels that hold anything but the
masked-out symbol, coded uniformly; then the active channels' symbols, tile by tile
(:func:`latent_tiles`), each tile coded wavefront by wavefront with its own context.
"""

from __future__ import annotations

import warnings
from typing import Callable

import numpy as np

from imgcomp.entropy import SymbolDecoder, uniform_probabilities
from imgcomp.errors import ImgcompError
from imgcomp.systems.mentzer2018.config import DOWNSAMPLING
from imgcomp.systems.mentzer2018.tags import CONTEXT_FILE, context_file

TILE_LATENT = 128
MAX_CACHED_SCHEDULES = 4


def latent_tiles(height: int, width: int) -> list[tuple[int, int, int, int]]:
    """(top, left, height, width) of the latent tiles, in coding order."""
    return [
        (top, left, min(TILE_LATENT, height - top), min(TILE_LATENT, width - left))
        for top in range(0, height, TILE_LATENT)
        for left in range(0, width, TILE_LATENT)
    ]


def latent_size(height: int, width: int) -> tuple[int, int]:
    """Latent rows and columns of an image (one symbol per 8 x 8 pixels, padded)."""
    return -(-height // DOWNSAMPLING), -(-width // DOWNSAMPLING)


def integer_params(loaded):
    """The model's integer P (loaded once, cached on the model), or None without a file.
    ``loaded`` is any loaded model with ``path``, ``weights_sha256`` and a ``cache`` dict."""
    cache = loaded.cache
    if "integer_context" not in cache:
        path = context_file(loaded.path)
        if path is None:
            cache["integer_context"] = None
        else:
            from imgcomp.systems.mentzer2018.integer_context import load

            try:
                params = load(path)
            except (ValueError, OSError) as exc:
                raise ImgcompError(f"{path}: cannot load the integer context model ({exc})") from None
            built_from = params.meta.get("weights_sha256")
            if built_from and loaded.weights_sha256 and built_from != loaded.weights_sha256:
                warnings.warn(
                    f"{path} was built from other weights than {loaded.path}'s: files stay exact but may be "
                    "larger; rebuild it with python -m imgcomp.systems.mentzer2018.integer_context.build",
                    stacklevel=3,
                )
            cache["integer_context"] = params
    return cache["integer_context"]


def integer_coder(loaded, shape: tuple[int, int, int]):
    """The integer wavefront coder of one tile shape (cached per model and shape)."""
    coders = loaded.cache.setdefault("integer_wavefront", {})
    if shape not in coders:
        params = integer_params(loaded)
        if params is None:
            raise ImgcompError(f"stream version 2 needs the model's {CONTEXT_FILE}, which {loaded.path} lacks")
        if len(coders) >= MAX_CACHED_SCHEDULES:  # each holds index arrays of tens of MB
            coders.pop(next(iter(coders)))
        from imgcomp.systems.mentzer2018.integer_context import IntegerWavefrontContextModel

        coders[shape] = IntegerWavefrontContextModel(params, shape)
    return coders[shape]


def pull_symbols(
    decoder: SymbolDecoder, channels: int, height: int, width: int, masked_out: int,
    coder_for: Callable[[tuple[int, int, int]], object],
) -> np.ndarray:
    """The (K, h, w) int64 symbol volume of an image of ``height`` x ``width`` pixels: ``K'``, then
    each tile's active channels from ``coder_for(tile shape).decode(decoder)``."""
    h, w = latent_size(height, width)
    symbols = np.full((channels, h, w), masked_out, np.int64)
    active = int(decoder.pull(uniform_probabilities(channels + 1))[0])
    for top, left, th, tw in latent_tiles(h, w) if active else []:
        symbols[:active, top : top + th, left : left + tw] = np.asarray(coder_for((active, th, tw)).decode(decoder))
    return symbols
