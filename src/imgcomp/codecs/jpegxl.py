"""JPEG XL through imagecodecs (libjxl), lossy VarDCT at a Butteraugli distance."""

from __future__ import annotations

from typing import Any

import numpy as np

from imgcomp.codecs.base import (
    Codec,
    Setting,
    check_decoded_image,
    check_input_image,
    library_errors,
    setting_in_range,
)
from imgcomp.errors import ImgcompError


class JpegXlCodec(Codec):
    """JPEG XL, bare codestream (no container), effort 7; setting: distance (lower is better,
    1.0 is "visually lossless"). Its header is bit-packed, so no payload-only split is reported."""

    name = "jpegxl"
    label = "JPEG XL"
    setting_name = "distance"
    default_settings = (25.0, 15.0, 10.0, 7.0, 5.0, 3.6, 2.6, 1.9, 1.4, 1.0, 0.7, 0.5, 0.35)
    effort = 7

    def __init__(self) -> None:
        try:
            import imagecodecs
        except ImportError:  # pragma: no cover - a dependency
            raise ImgcompError(f"{self.name}: imagecodecs is not installed") from None
        if not imagecodecs.JPEGXL.available:
            raise ImgcompError(f"{self.name}: this imagecodecs build has no JPEG XL support")
        self._codecs = imagecodecs

    def library_version(self) -> str:
        versions = dict(part.split("-", 1) for part in self._codecs.version().split(", ") if "-" in part)
        return f"libjxl {versions.get('libjxl', '?')} (imagecodecs {self._codecs.__version__})"

    def parameters(self) -> dict[str, Any]:
        return {"effort": self.effort, "container": False}

    def encode(self, image: np.ndarray, setting: Setting) -> bytes:
        image = check_input_image(image)
        distance = setting_in_range(self.name, setting, 0.01, 25, what="distance")
        with library_errors(self.name, f"encode at distance {setting}"):
            return bytes(
                self._codecs.jpegxl_encode(image, distance=distance, effort=self.effort, usecontainer=False)
            )

    def decode(self, data: bytes) -> np.ndarray:
        with library_errors(self.name, "decode"):
            array = self._codecs.jpegxl_decode(data)
        array = np.asarray(array)
        if array.ndim == 2:
            array = np.repeat(array[:, :, None], 3, axis=2)
        return check_decoded_image(array, self.name)
