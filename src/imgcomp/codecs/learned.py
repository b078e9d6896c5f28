"""The learned context-model codec (Mentzer et al. 2018) behind the common codec interface.

Registered as ``imgcomp``: files as `compress` writes them (with the low-pass layer of
:mod:`imgcomp.lowpass`), with the default model (the shipped one, or the folder or name in
the ``IMGCOMP_MODEL`` environment variable, which worker processes inherit), and its settings are
the model's quality levels. ``imgcomp-refine`` is the same with the encoder-side latent
refinement of :mod:`imgcomp.refine`: ``imgcomp encode --refine N`` with N = 20, or the number in
the ``IMGCOMP_REFINE_STEPS`` environment variable.
"""

from __future__ import annotations

import os

import numpy as np

from imgcomp import bitstream
from imgcomp.codecs.base import Codec, Setting, check_input_image, library_errors
from imgcomp.errors import ImgcompError
from imgcomp.zoo import default_model, get_model


class ContextModelCodec(Codec):
    name = "imgcomp"
    label = "imgcomp (Mentzer 2018 + low-pass layer)"
    setting_name = "quality"
    refine_steps = 0

    def __init__(self) -> None:
        self.model = get_model()
        self.model_name = default_model()
        self.default_settings = tuple(range(1, self.model.config.importance_heads + 1))

    def library_version(self) -> str:
        from imgcomp import __version__

        return f"imgcomp {__version__} (model {self.model_name}, weights {self.model.weights_sha256[:12]})"

    def parameters(self) -> dict:
        return {"model": self.model_name, "weights_sha256": self.model.weights_sha256, "refine_steps": self.refine_steps}

    def encode(self, image: np.ndarray, setting: Setting) -> bytes:
        from imgcomp.codec import compress

        return compress(check_input_image(image), quality=int(setting), model=self.model, refine_steps=self.refine_steps)

    def decode(self, data: bytes) -> np.ndarray:
        from imgcomp.codec import decode_image

        with library_errors(self.name, "decode"):
            return decode_image(data, model=self.model)

    def header_bytes(self, data: bytes) -> int | None:
        _, payload = bitstream.unpack(data)
        return len(data) - len(payload)


class RefinedContextModelCodec(ContextModelCodec):
    """The same files, with each latent optimised for its image before coding (slow encode)."""

    name = "imgcomp-refine"
    default_refine_steps = 20

    def __init__(self) -> None:
        super().__init__()
        value = os.environ.get("IMGCOMP_REFINE_STEPS", str(self.default_refine_steps))
        if not value.isdigit() or int(value) < 1:
            raise ImgcompError(f"IMGCOMP_REFINE_STEPS must be a positive whole number, got {value!r}")
        self.refine_steps = int(value)
        self.label = f"imgcomp + latent refinement ({self.refine_steps} steps)"
