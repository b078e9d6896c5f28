"""Entropy coding: the range-coder queue and the wavefront schedule of the 3-D context model."""

from imgcomp.entropy.range_coder import SymbolDecoder, SymbolEncoder, coder_probabilities
from imgcomp.entropy.wavefront import WavefrontContextModel, wavefront_index

__all__ = [
    "SymbolDecoder",
    "SymbolEncoder",
    "WavefrontContextModel",
    "coder_probabilities",
    "wavefront_index",
]
