"""Learned codecs behind the common codec interface, named by system and model.

Every shipped model is a codec: ``mentzer2018/cpu-colour-lp`` (files as :func:`imgcomp.compress`
writes them, with the low-pass layer chosen per image), and ``mentzer2018/cpu-colour-lp+refine20``
the same with 20 steps of encoder-side latent refinement (``imgcomp encode --refine 20``). Their
settings are the model's quality levels. A model folder becomes a codec with
:func:`register_model_codec`.

Deprecated names, kept because result files of imgcomp 0.2-0.5 use them: ``imgcomp`` (imgcomp 0.5's
default model, ``mentzer2018/cpu-colour-lp``) and ``imgcomp-refine`` (the same, refined in 20 steps).
"""

from __future__ import annotations

import functools
import os

import numpy as np

from imgcomp.codecs.base import Codec, Setting, check_input_image, library_errors
from imgcomp.errors import ImgcompError

DEFAULT_REFINE_STEPS = 20
REFINE_SUFFIX = "+refine"
ALIASED_MODEL = "mentzer2018/cpu-colour-lp"  # what result files of imgcomp 0.5 call "imgcomp" (its default)


class LearnedCodec(Codec):
    """One model of one system as a codec (``model``: shipped name or exported model folder)."""

    setting_name = "quality"

    def __init__(self, model: str, refine_steps: int = 0, name: str | None = None) -> None:
        from imgcomp.zoo import get_model, model_name

        if refine_steps < 0:
            raise ImgcompError(f"refine_steps must be >= 0, got {refine_steps}")
        self.model = get_model(model)
        self.model_name = model_name(self.model)
        self.refine_steps = refine_steps
        self.name = name or codec_name(self.model_name, refine_steps)
        system = self.model.system
        refined = f" + latent refinement ({refine_steps} steps)" if refine_steps else ""
        shipped = "/" in self.model_name and not os.path.isabs(self.model_name)
        self.label = (self.model_name if shipped else self.name.split(REFINE_SUFFIX)[0]) + refined
        self.default_settings = tuple(range(1, system.qualities(self.model) + 1))

    def library_version(self) -> str:
        from imgcomp import __version__

        return f"imgcomp {__version__} (model {self.model_name}, weights {self.model.weights_sha256[:12]})"

    def parameters(self) -> dict:
        return {
            "system": self.model.system.name, "model": self.model_name,
            "weights_sha256": self.model.weights_sha256, "refine_steps": self.refine_steps,
        }

    def encode(self, image: np.ndarray, setting: Setting) -> bytes:
        from imgcomp.api import compress

        return compress(check_input_image(image), quality=int(setting), model=self.model, refine_steps=self.refine_steps)

    def decode(self, data: bytes) -> np.ndarray:
        from imgcomp.api import decode_image

        with library_errors(self.name, "decode"):
            return decode_image(data, model=self.model)

    def header_bytes(self, data: bytes) -> int | None:
        from imgcomp.container import header_bytes

        return header_bytes(data)


def codec_name(model_name: str, refine_steps: int = 0) -> str:
    return model_name + (f"{REFINE_SUFFIX}{refine_steps}" if refine_steps else "")


def register_learned_codecs() -> list[str]:
    """Register every shipped model (plain and refined) and the deprecated aliases."""
    from imgcomp.codecs.registry import register_codec
    from imgcomp.systems import get_system
    from imgcomp.zoo import coding_system, shipped_models

    names = []
    for model, folder in shipped_models().items():
        refines = get_system(coding_system(model, folder)).supports_refinement
        for steps in (0, DEFAULT_REFINE_STEPS) if refines else (0,):
            name = codec_name(model, steps)
            register_codec(name, functools.partial(LearnedCodec, model, steps), replace=True)
            names.append(name)
    if ALIASED_MODEL in shipped_models():
        register_codec("imgcomp", functools.partial(LearnedCodec, ALIASED_MODEL, 0, "imgcomp"), replace=True, deprecated=True)
        register_codec(
            "imgcomp-refine", functools.partial(LearnedCodec, ALIASED_MODEL, DEFAULT_REFINE_STEPS, "imgcomp-refine"),
            replace=True, deprecated=True,
        )
    return names


def register_model_codec(model: str | os.PathLike, refine_steps: int = 0, name: str | None = None) -> str:
    """Make an exported model folder (or shipped model) a codec; returns its name (default: the
    folder's name, or its run's for ``RUN/model``, prefixed by its system: ``mentzer2018/my-run``)."""
    from imgcomp.codecs.registry import register_codec
    from imgcomp.zoo import get_model, model_name

    if refine_steps < 0:
        raise ImgcompError(f"refine_steps must be >= 0, got {refine_steps}")
    loaded = get_model(model)
    shipped = model_name(loaded)
    if name is None:
        folder = os.path.normpath(str(model))
        base = os.path.basename(folder)
        if base == "model":  # RUN/model, as imgcomp train exports it
            base = os.path.basename(os.path.dirname(os.path.abspath(folder))) or base
        name = shipped if "/" in shipped and not os.path.isabs(shipped) else f"{loaded.system.name}/{base}"
        name = codec_name(name.lower(), refine_steps)
    register_codec(name, functools.partial(LearnedCodec, str(loaded.path), refine_steps, name), replace=True)
    return name
