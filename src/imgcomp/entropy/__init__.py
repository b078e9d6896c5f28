"""Entropy coding primitives shared by every system: the range-coder queue and probability rows.

A system's own schedules (e.g. Mentzer et al.'s wavefront over the 3-D context model,
:mod:`imgcomp.systems.mentzer2018.wavefront`) drive these."""

from imgcomp.entropy.range_coder import (
    SymbolDecoder,
    SymbolEncoder,
    coder_probabilities,
    ideal_bits,
    uniform_probabilities,
)

__all__ = ["SymbolDecoder", "SymbolEncoder", "coder_probabilities", "ideal_bits", "uniform_probabilities"]
