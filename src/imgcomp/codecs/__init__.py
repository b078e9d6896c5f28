"""Codecs behind one interface (:class:`Codec`) and a registry of them by name.

Importing this package registers the classical baselines: ``jpeg420``, ``jpeg444``, ``jpeg2000``,
``webp``, ``heic444``, ``avif444``, ``jpegxl``; and one learned codec per shipped model, named by
system and model (``mentzer2018/cpu-colour-lp``, and ``...+refine20`` with a slow, refining
encoder; see :mod:`imgcomp.codecs.learned`).
"""

from __future__ import annotations

from imgcomp.codecs.base import Codec, Setting
from imgcomp.codecs.heic import Heic444Codec
from imgcomp.codecs.jpegxl import JpegXlCodec
from imgcomp.codecs.learned import LearnedCodec, register_learned_codecs, register_model_codec
from imgcomp.codecs.pillow_codecs import (
    Avif444Codec,
    Jpeg420Codec,
    Jpeg444Codec,
    Jpeg2000Codec,
    WebpCodec,
)
from imgcomp.codecs.registry import (
    available_codecs,
    codec_factory,
    get_codec,
    parse_codec_names,
    register_codec,
)

for _baseline in (
    Jpeg420Codec,
    Jpeg444Codec,
    Jpeg2000Codec,
    WebpCodec,
    Heic444Codec,
    Avif444Codec,
    JpegXlCodec,
):
    register_codec(_baseline.name, _baseline, baseline=True, replace=True)
register_learned_codecs()

__all__ = [
    "Codec",
    "LearnedCodec",
    "Setting",
    "available_codecs",
    "codec_factory",
    "get_codec",
    "parse_codec_names",
    "register_codec",
    "register_model_codec",
]
