"""Rippel & Bourdev (2017) stream coding: image -> integer symbols -> bitplanes -> range-coded payload, and back.

Encoding: pad to a multiple of ``2^(M-1)`` (edge replication), run the pyramidal encoder and the
quantiser of the requested quality, and code the symbols' bitplanes with the model's context table
(:mod:`.bit_context`). The payload is only those range-coded words: the image size and quality come
from the container. Decoding pulls the symbols back (exact integer contexts and table: the same
symbols on any machine), runs the decoder and crops the padding.

Stream version 1 is this layout (:mod:`.symbols`, shared with the torch-free decoder
:mod:`.decoder_numpy`). A change to the contexts, the coding order or the table's meaning needs a
new stream version.
"""

from __future__ import annotations

import numpy as np
import torch

from imgcomp.entropy import SymbolEncoder
from imgcomp.errors import ImgcompError
from imgcomp.systems.base import Decoded, Encoded
from imgcomp.systems.rippel2017 import bit_context
from imgcomp.systems.rippel2017.symbols import check_version, pull_symbols
from imgcomp.tensors import image_to_tensor, pad_to_multiple, tensor_to_image


def table(loaded) -> bit_context.CodingTable:
    """The model's bit-context table, prepared once per loaded model."""
    cache = loaded.cache
    if "context_table" not in cache:
        cache["context_table"] = bit_context.CodingTable(loaded.model.context_table.numpy())
    return cache["context_table"]


def image_symbols(model, pixels: np.ndarray, quality: int) -> np.ndarray:
    """Symbols (C, h, w) int64 of an (H, W, 3) uint8 image at ``quality`` (1-based)."""
    x = pad_to_multiple(image_to_tensor(pixels), model.config.pad_multiple).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        return model.symbols(x, quality - 1)[0].numpy()


def count_table_on(model, pixels: np.ndarray, qualities) -> None:
    """Set ``model``'s coding table from the symbols of one (H, W, 3) image at ``qualities``
    (1-based): a table for an untrained model (speed figures, tests); training counts its own."""
    counts = sum(bit_context.count(model.config, image_symbols(model, pixels, q)[None], q - 1) for q in qualities)
    model.context_table.copy_(torch.from_numpy(bit_context.table_from_counts(model.config, counts)))


def reconstruct(model, symbols: np.ndarray, quality: int, height: int, width: int) -> np.ndarray:
    """The decoder's output for symbols (C, h, w), cropped to the image: (H, W, 3) uint8."""
    with torch.no_grad():
        y_hat = model.dequantise(torch.from_numpy(symbols)[None], quality - 1).contiguous(memory_format=torch.channels_last)
        return tensor_to_image(model.decode_features(y_hat)[:, :, :height, :width])


def encode(
    loaded, pixels: np.ndarray, quality: int, *, refine_steps: int = 0, objective_lowpass=None,
    stream_version: int | None = None,
) -> Encoded:
    """Code an image at ``quality`` (1-based)."""
    if refine_steps:
        raise ImgcompError("rippel2017 has no encoder-side latent refinement (refine_steps must be 0)")
    stream_version = check_version(stream_version)
    height, width = pixels.shape[:2]
    model = loaded.model
    symbols = image_symbols(model, pixels, quality)
    encoder = SymbolEncoder()
    bits = bit_context.encode(model.config, table(loaded), symbols, quality - 1, encoder)
    return Encoded(encoder.finish(), bits, lambda: reconstruct(model, symbols, quality, height, width), stream_version)


def decode_symbols(loaded, payload: bytes, width: int, height: int, quality: int) -> np.ndarray:
    return pull_symbols(loaded.model.config, table(loaded), payload, width, height, quality)


def decode(loaded, payload: bytes, width: int, height: int, quality: int, stream_version: int) -> Decoded:
    """Invert :func:`encode`."""
    check_version(stream_version)
    symbols = decode_symbols(loaded, payload, width, height, quality)
    return Decoded(reconstruct(loaded.model, symbols, quality, height, width), None)
