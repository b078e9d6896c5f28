"""Decoding Rippel & Bourdev files without torch: numpy (+ constriction) only.

The symbols come from :mod:`.bit_context` with the model's integer table, exactly as the torch
decoder and the encoder get them on any machine; the decoder runs in numpy
(:mod:`.synthesis_numpy`) from the same ``model.safetensors``. Its pixels may differ from the torch
decoder's by a rounding step (docs/rippel2017.md states the measured figures). Every stream
version this imgcomp reads (1) decodes this way; sharded GPU-job folders need torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imgcomp.errors import ImgcompError
from imgcomp.models.torch_free import TorchFreeModel
from imgcomp.numpy_conv import to_pixels
from imgcomp.systems.base import Decoded
from imgcomp.systems.rippel2017.bit_context import CodingTable, table_size
from imgcomp.systems.rippel2017.config import RippelConfig
from imgcomp.systems.rippel2017.symbols import READABLE_STREAM_VERSIONS, check_version, pull_symbols
from imgcomp.systems.rippel2017.synthesis_numpy import NumpySynthesis

TORCH_FREE_STREAM_VERSIONS = READABLE_STREAM_VERSIONS


@dataclass(kw_only=True)
class NumpyModel(TorchFreeModel):
    """What decoding needs of a model, loaded without torch."""

    config: RippelConfig
    synthesis: NumpySynthesis = field(repr=False)
    table: CodingTable = field(repr=False)


def load(folder: Path, config: RippelConfig, metadata: dict, weights_sha256: str, state: dict[str, np.ndarray]) -> NumpyModel:
    """A :class:`NumpyModel` from a model folder's parsed config and its weights as numpy arrays."""
    try:
        synthesis = NumpySynthesis(state, config)
        f0 = np.asarray(state["context_table"])
    except KeyError as exc:
        raise ImgcompError(f"{folder}: weights lack {exc.args[0]!r}: not a Rippel & Bourdev model of this config") from None
    except ImgcompError as exc:
        raise ImgcompError(f"{folder}: {exc}") from None
    if f0.shape != (table_size(config),):
        raise ImgcompError(f"{folder}: the bit-context table has {f0.size} entries, the config needs {table_size(config)}")
    return NumpyModel(
        config=config, synthesis=synthesis, table=CodingTable(f0), metadata=metadata, weights_sha256=weights_sha256,
        path=folder)


def decode(model: NumpyModel, payload: bytes, width: int, height: int, quality: int, stream_version: int) -> Decoded:
    """Decode a payload to (H, W, 3) uint8 pixels (torch-free); ``quality`` 1-based."""
    check_version(stream_version)
    symbols = pull_symbols(model.config, model.table, payload, width, height, quality)
    return Decoded(reconstruct(model.synthesis, symbols, quality, height, width), None)


def reconstruct(synthesis: NumpySynthesis, symbols: np.ndarray, quality: int, height: int, width: int) -> np.ndarray:
    """The decoder's output for symbols (C, h, w) at ``quality`` (1-based), cropped to the image:
    (H, W, 3) uint8 (:func:`.stream.reconstruct` without torch)."""
    return to_pixels(synthesis(symbols, quality - 1), height, width)  # BLAS's own threads, as Mentzer's D (docs/rippel2017.md)
