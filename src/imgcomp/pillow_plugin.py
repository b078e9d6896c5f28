"""Pillow support for ``.icz`` files: ``PIL.Image.open("x.icz")`` and ``image.save("x.icz")``.

Registered when :mod:`imgcomp` is imported. Opening reads only the header (and the ICC profile
and EXIF of a file made with ``keep_metadata``, into ``info``); pixels are decoded on first access. Saving accepts ``quality=`` (importance level) and ``model=`` (name or folder).
"""

from __future__ import annotations

import io

from PIL import Image, ImageFile

from imgcomp import container

FORMAT = "ICZ"


def _accept(prefix: bytes) -> bool:
    return prefix[: len(container.MAGIC)] == container.MAGIC


class IczImageFile(ImageFile.ImageFile):
    format = FORMAT
    format_description = "imgcomp learned image compression"

    def _open(self) -> None:
        self._data = self.fp.read()
        header, sections = container.unpack(self._data)  # validates before anything is decoded
        metadata = container.unpack_metadata(sections.get(container.SECTION_METADATA, b""))
        if "icc_profile" in metadata:
            self.info["icc_profile"] = metadata["icc_profile"]
        if "exif" in metadata:
            self.info["exif"] = b"Exif\x00\x00" + metadata["exif"]
        self._size = (header.width, header.height)
        self._mode = "RGB"
        self.info["quality"] = header.quality
        self.info["model_tag"] = header.model_tag.hex()
        self.info["system_id"] = header.system_id
        self.tile = [ImageFile._Tile("raw", (0, 0, header.width, header.height), 0, ("RGB", 0, 1))]

    def load(self):
        if self.tile and getattr(self, "_data", None) is not None:
            from imgcomp.api import decode_image

            pixels = decode_image(self._data)
            self._data = None
            self.fp = io.BytesIO(pixels.tobytes())
            self._exclusive_fp = True
        return super().load()


def _save(image: Image.Image, fp, filename) -> None:
    from imgcomp.api import compress

    info = image.encoderinfo
    fp.write(compress(image.convert("RGB"), quality=info.get("quality"), model=info.get("model")))


def register() -> None:
    Image.register_open(FORMAT, IczImageFile, _accept)
    Image.register_save(FORMAT, _save)
    Image.register_extension(FORMAT, ".icz")
    Image.register_mime(FORMAT, "image/x-imgcomp")
