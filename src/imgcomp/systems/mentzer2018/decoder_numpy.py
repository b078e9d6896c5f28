"""Decoding Mentzer et al. files without torch: numpy (+ constriction) only.

Stream version 2 files need nothing else: the integer-exact P (:mod:`.integer_context`) gives the
symbols, exactly as the torch decoder and the encoder get them on any machine; the decoder D runs
in numpy (:mod:`.synthesis_numpy`) from the same ``model.safetensors``. Its pixels may differ from
the torch decoder's by a rounding step, as two IDCT implementations do (docs/format.md states the
measured bound). Stream version 1 (float P) and sharded GPU-job folders need torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imgcomp.errors import ImgcompError
from imgcomp.models.torch_free import TorchFreeModel
from imgcomp.numpy_conv import to_pixels
from imgcomp.systems.base import Decoded
from imgcomp.systems.mentzer2018.config import CodecConfig
from imgcomp.systems.mentzer2018.symbols import integer_coder, pull_symbols
from imgcomp.systems.mentzer2018.synthesis_numpy import NumpySynthesis
from imgcomp.systems.mentzer2018.tags import EXACT_STREAM_VERSION

TORCH_FREE_STREAM_VERSIONS = (EXACT_STREAM_VERSION,)


@dataclass(kw_only=True)
class NumpyModel(TorchFreeModel):
    """What decoding needs of a model, loaded without torch."""

    config: CodecConfig
    synthesis: NumpySynthesis = field(repr=False)
    centers: np.ndarray  # (L,) float32: the quantizer's centres

    def zero_symbol(self) -> int:
        """Q(0): the nearest centre to 0 (the first of equals, as ``argmin`` in torch)."""
        return int(np.argmin(np.abs(self.centers)))

    def masked_out_symbol(self) -> int:
        return self.config.num_centers if self.config.mask_symbol else self.zero_symbol()

    def symbol_values(self, symbols: np.ndarray) -> np.ndarray:
        """Latent values (float32) of coded symbols; the masked-out symbol (if any) is Q(0)."""
        if self.config.mask_symbol:
            symbols = np.where(symbols == self.config.num_centers, self.zero_symbol(), symbols)
        return self.centers[symbols]


def load(folder: Path, config: CodecConfig, metadata: dict, weights_sha256: str, state: dict[str, np.ndarray]) -> NumpyModel:
    """A :class:`NumpyModel` from a model folder's parsed config and its weights as numpy arrays."""
    try:
        synthesis = NumpySynthesis(state, config)
        centers = np.asarray(state["quantizer.centers"], np.float32)
    except KeyError as exc:
        raise ImgcompError(f"{folder}: weights lack {exc.args[0]!r}: not a Mentzer et al. model") from None
    return NumpyModel(
        config=config, synthesis=synthesis, centers=centers, metadata=metadata, weights_sha256=weights_sha256, path=folder)


def decode(model: NumpyModel, payload: bytes, width: int, height: int, quality: int, stream_version: int) -> Decoded:
    """Decode a stream version 2 payload to (H, W, 3) uint8 pixels (torch-free)."""
    if stream_version not in TORCH_FREE_STREAM_VERSIONS:
        raise ImgcompError(
            f"mentzer2018 stream version {stream_version} (float P) decodes with torch only (engine 'torch')")
    from imgcomp.entropy import SymbolDecoder

    decoder = SymbolDecoder(payload)
    symbols = pull_symbols(
        decoder, model.config.latent_channels, height, width, model.masked_out_symbol(),
        lambda shape: integer_coder(model, shape),
    )
    image = model.synthesis(model.symbol_values(symbols))
    return Decoded(to_pixels(image, height, width), decoder)
