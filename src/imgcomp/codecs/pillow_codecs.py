"""Classical codecs through Pillow: JPEG (libjpeg-turbo), JPEG 2000 (OpenJPEG), WebP (libwebp) and
AVIF (libavif with aom).

Every encoder option that changes the rate-distortion trade-off is set explicitly (not left to
library defaults) and recorded by :meth:`Codec.parameters`.
"""

from __future__ import annotations

import io
from typing import Any, ClassVar

import numpy as np
import PIL
from PIL import Image, features

from imgcomp.codecs.base import (
    Codec,
    Setting,
    check_decoded_image,
    check_input_image,
    library_errors,
    setting_in_range,
)
from imgcomp.codecs.headers import (
    isobmff_header_bytes,
    jpeg2000_header_bytes,
    jpeg_header_bytes,
    webp_header_bytes,
)
from imgcomp.errors import ImgcompError


class PillowCodec(Codec):
    """A codec that is one Pillow save format with fixed options plus one swept option."""

    pillow_format: ClassVar[str] = ""
    pillow_feature: ClassVar[str] = ""
    """Pillow codec name that must be available."""
    version_feature: ClassVar[str] = ""
    """Pillow feature whose version is reported, when not ``pillow_feature`` itself."""
    library_name: ClassVar[str] = ""

    def __init__(self) -> None:
        if not features.check(self.pillow_feature):
            raise ImgcompError(f"{self.name}: this Pillow build has no {self.pillow_feature} support")

    def library_version(self) -> str:
        version = features.version(self.version_feature or self.pillow_feature)
        return f"{self.library_name} {version} (Pillow {PIL.__version__})"

    def save_options(self, setting: Setting) -> dict[str, Any]:
        """Keyword arguments of ``Image.save`` for one setting."""
        raise NotImplementedError

    def encode(self, image: np.ndarray, setting: Setting) -> bytes:
        image = check_input_image(image)
        buffer = io.BytesIO()
        with library_errors(self.name, f"encode at {self.setting_name} {setting}"):
            Image.fromarray(image, "RGB").save(
                buffer, format=self.pillow_format, **self.save_options(setting)
            )
        return buffer.getvalue()

    def decode(self, data: bytes) -> np.ndarray:
        with library_errors(self.name, "decode"):
            with Image.open(io.BytesIO(data), formats=[self.pillow_format]) as decoded:
                decoded.load()
                array = np.asarray(decoded.convert("RGB"))
        return check_decoded_image(array, self.name)


class JpegCodec(PillowCodec):
    """Baseline JPEG with optimised Huffman tables; chroma subsampling fixed per subclass."""

    pillow_format = "JPEG"
    pillow_feature = "jpg"
    version_feature = "libjpeg_turbo"
    library_name = "libjpeg-turbo"
    setting_name = "quality"
    subsampling: ClassVar[str] = ""
    default_settings = (3, 5, 8, 12, 18, 25, 35, 50, 65, 75, 85, 90, 95)

    def parameters(self) -> dict[str, Any]:
        return {"optimize": True, "progressive": False, "subsampling": self.subsampling}

    def save_options(self, setting: Setting) -> dict[str, Any]:
        quality = int(setting_in_range(self.name, setting, 1, 100, integer=True))
        return {"quality": quality, "optimize": True, "subsampling": self.subsampling}

    def header_bytes(self, data: bytes) -> int:
        return jpeg_header_bytes(data)


class Jpeg420Codec(JpegCodec):
    name = "jpeg420"
    label = "JPEG 4:2:0"
    subsampling = "4:2:0"


class Jpeg444Codec(JpegCodec):
    name = "jpeg444"
    label = "JPEG 4:4:4"
    subsampling = "4:4:4"


class Jpeg2000Codec(PillowCodec):
    """JPEG 2000 (JP2 file), irreversible 9/7 wavelet with the colour transform, one quality layer
    at a target rate: the setting is the target bits per pixel (``quality_mode="rates"`` with
    compression ratio 24 / bpp)."""

    name = "jpeg2000"
    label = "JPEG 2000"
    pillow_format = "JPEG2000"
    pillow_feature = "jpg_2000"
    library_name = "OpenJPEG"
    setting_name = "target bpp"
    default_settings = (0.04, 0.06, 0.09, 0.13, 0.18, 0.25, 0.35, 0.5, 0.7, 0.95, 1.3, 1.7, 2.2)

    def parameters(self) -> dict[str, Any]:
        return {"container": "jp2", "irreversible": True, "mct": 1, "quality_mode": "rates"}

    def save_options(self, setting: Setting) -> dict[str, Any]:
        target_bpp = setting_in_range(self.name, setting, 0.001, 23.9, what="target bpp")
        return {
            "irreversible": True,
            "mct": 1,
            "quality_mode": "rates",
            "quality_layers": [24.0 / target_bpp],
            "no_jp2": False,
        }

    def header_bytes(self, data: bytes) -> int:
        return jpeg2000_header_bytes(data)


class WebpCodec(PillowCodec):
    """Lossy WebP (VP8, always 4:2:0), slowest and best method 6."""

    name = "webp"
    label = "WebP"
    pillow_format = "WEBP"
    pillow_feature = "webp"
    library_name = "libwebp"
    setting_name = "quality"
    default_settings = (0, 5, 12, 22, 35, 50, 62, 72, 80, 86, 91, 95, 100)

    def parameters(self) -> dict[str, Any]:
        return {"method": 6, "lossless": False}

    def save_options(self, setting: Setting) -> dict[str, Any]:
        quality = int(setting_in_range(self.name, setting, 0, 100, integer=True))
        return {"quality": quality, "method": 6, "lossless": False}

    def header_bytes(self, data: bytes) -> int:
        return webp_header_bytes(data)


class Avif444Codec(PillowCodec):
    """AVIF (libavif + aom) with full-resolution chroma (4:4:4), full range, encoder speed 6."""

    name = "avif444"
    label = "AVIF 4:4:4"
    pillow_format = "AVIF"
    pillow_feature = "avif"
    library_name = "libavif"
    setting_name = "quality"
    default_settings = (2, 12, 22, 32, 42, 52, 60, 68, 75, 82, 88, 93, 97)
    speed: ClassVar[int] = 6

    def library_version(self) -> str:
        from PIL import _avif

        return f"{super().library_version()} [{_avif.codec_versions()}]"

    def parameters(self) -> dict[str, Any]:
        return {"subsampling": "4:4:4", "speed": self.speed, "range": "full", "codec": "aom"}

    def save_options(self, setting: Setting) -> dict[str, Any]:
        quality = int(setting_in_range(self.name, setting, 0, 100, integer=True))
        return {
            "quality": quality,
            "subsampling": "4:4:4",
            "speed": self.speed,
            "range": "full",
            "codec": "aom",
        }

    def header_bytes(self, data: bytes) -> int:
        return isobmff_header_bytes(data)
