"""Integer-exact context model P: coder frequencies that are identical on every machine.

Torch-free at import (numpy, threadpoolctl, safetensors); the converter from a trained float
model is :mod:`imgcomp.systems.mentzer2018.integer_context.convert` (imports torch).

- :class:`IntegerContextParams`, :func:`save`, :func:`load`: the integer model and its file;
- :class:`IntegerWavefrontContextModel`: ``encode(symbols, encoder)`` / ``decode(decoder)`` of a
  (K, H, W) volume through the range coder's push/pull interface;
- :func:`frequencies`: integer logits -> integer frequencies (>= 1, sum ``2**16``).
"""

from imgcomp.systems.mentzer2018.integer_context.model import (
    FREQUENCY_BITS, TOTAL, IntegerContextParams, IntegerLayer, exp_table, frequencies, load, params_sha256, reference_logits,
    save,
)
from imgcomp.systems.mentzer2018.integer_context.wavefront import IntegerWavefrontContextModel

__all__ = [
    "FREQUENCY_BITS", "TOTAL", "IntegerContextParams", "IntegerLayer", "IntegerWavefrontContextModel",
    "exp_table", "frequencies", "load", "params_sha256", "reference_logits", "save",
]
