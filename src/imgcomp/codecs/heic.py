"""HEIC (HEVC intra in HEIF) through pillow-heif / libheif / x265, 4:4:4 chroma.

The stand-in for BPG (Bellard's HEVC-intra format, 4:4:4 in the papers' comparisons), which no
package registry ships.
"""

from __future__ import annotations

import io
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
from imgcomp.codecs.headers import isobmff_header_bytes
from imgcomp.errors import ImgcompError


class Heic444Codec(Codec):
    """HEVC intra via x265 at 4:4:4, 8 bits, one image (no grid tiles); setting: quality 0-100."""

    name = "heic444"
    label = "HEIC 4:4:4"
    setting_name = "quality"
    default_settings = (8, 14, 20, 26, 32, 38, 44, 50, 56, 62, 68, 74)

    def __init__(self) -> None:
        try:
            import pillow_heif
        except ImportError:  # pragma: no cover - a dependency
            raise ImgcompError(f"{self.name}: pillow-heif is not installed") from None
        if not pillow_heif.libheif_info().get("encoders", {}).get("x265"):
            raise ImgcompError(f"{self.name}: this pillow-heif build has no x265 encoder")
        self._heif = pillow_heif

    def library_version(self) -> str:
        info = self._heif.libheif_info()
        return (
            f"libheif {info['libheif']}, {info['encoders']['x265']}, "
            f"{next(iter(info['decoders'].values()), '?')} (pillow-heif {self._heif.__version__})"
        )

    def parameters(self) -> dict[str, Any]:
        return {"chroma": 444, "bit_depth": 8, "tile_size": 0, "encoder": "x265"}

    def encode(self, image: np.ndarray, setting: Setting) -> bytes:
        image = check_input_image(image)
        quality = int(setting_in_range(self.name, setting, 0, 100, integer=True))
        height, width = image.shape[:2]
        buffer = io.BytesIO()
        with library_errors(self.name, f"encode at quality {quality}"):
            heif_file = self._heif.from_bytes(mode="RGB", size=(width, height), data=image.tobytes())
            heif_file.save(buffer, format="HEIF", quality=quality, chroma=444, tile_size=0)
        return buffer.getvalue()

    def decode(self, data: bytes) -> np.ndarray:
        with library_errors(self.name, "decode"):
            heif_file = self._heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True)
            if heif_file.mode != "RGB":
                array = np.asarray(heif_file.to_pillow().convert("RGB"))
            else:
                array = np.asarray(heif_file)
        return check_decoded_image(array, self.name)

    def header_bytes(self, data: bytes) -> int:
        return isobmff_header_bytes(data)
