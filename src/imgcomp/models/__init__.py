"""Model architectures and their registry.

* :mod:`~imgcomp.models.mentzer2018`: conditional probability models (Mentzer et al. 2018), also
  the base of Patel et al.'s perceptual variant.
"""

from imgcomp.models.mentzer2018 import (
    PRESETS,
    CodecConfig,
    ConditionalProbabilityCodec,
    preset,
)
from imgcomp.models.registry import available_architectures, create_model, register_architecture

__all__ = [
    "PRESETS",
    "CodecConfig",
    "ConditionalProbabilityCodec",
    "available_architectures",
    "create_model",
    "preset",
    "register_architecture",
]
