"""``--keep-metadata`` / ``keep_metadata=True``: EXIF (less orientation) and an sRGB ICC profile
travel in the container's metadata section and come back on decode; stripped by default."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms
from skimage import data as skimage_data
from test_io import wide_rgb_profile

import imgcomp
from imgcomp import container
from imgcomp.api import encode_image, read_metadata_section
from imgcomp.errors import ImgcompError
from imgcomp.io import EXIF_ORIENTATION, read_metadata

EXIF_IFD = 0x8769
FIELDS = {0x0132: "2024:01:02 03:04:05", 0x010F: "Canon", 0x0110: "EOS R5"}  # DateTime, Make, Model
ORIGINAL = {0x9003: "2023:05:06 07:08:09"}  # DateTimeOriginal, in the Exif IFD
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def photo_jpeg(orientation: int = 6, icc_profile: bytes | None = SRGB) -> bytes:
    """A 96x64 JPEG (stored landscape) with EXIF DateTime, Make, Model, DateTimeOriginal and an
    orientation tag (6: display rotated 90 degrees clockwise, i.e. 64x96)."""
    exif = Image.Exif()
    exif.update(FIELDS)
    exif[EXIF_ORIENTATION] = orientation
    exif.get_ifd(EXIF_IFD).update(ORIGINAL)
    buffer = io.BytesIO()
    params = {"icc_profile": icc_profile} if icc_profile else {}
    array = np.ascontiguousarray(skimage_data.astronaut()[:64, :96])
    Image.fromarray(array).save(buffer, format="JPEG", quality=95, exif=exif, **params)
    return buffer.getvalue()


def assert_exif_fields(exif: Image.Exif) -> None:
    assert {tag: exif.get(tag) for tag in FIELDS} == FIELDS
    assert dict(exif.get_ifd(EXIF_IFD)) == ORIGINAL
    assert EXIF_ORIENTATION not in exif  # applied to the pixels on input, so not carried


@pytest.fixture(scope="module")
def kept() -> bytes:
    return imgcomp.compress(photo_jpeg(), quality=1, keep_metadata=True)


def test_round_trip_through_the_api(kept: bytes) -> None:
    image = imgcomp.decompress(kept)
    assert image.size == (64, 96)  # the orientation tag was applied to the pixels
    assert image.info["icc_profile"] == SRGB
    exif = Image.Exif()
    exif.load(image.info["exif"])
    assert_exif_fields(exif)
    # the same pixels and coded streams as without metadata; only the section is added
    plain = imgcomp.compress(photo_jpeg(), quality=1)
    _, with_sections = container.unpack(kept)
    _, plain_sections = container.unpack(plain)
    assert {k: v for k, v in with_sections.items() if k != container.SECTION_METADATA} == plain_sections
    assert np.array_equal(np.array(image), imgcomp.decompress(plain, as_array=True))
    # Pillow's plugin reads it too, from the header
    assert Image.open(io.BytesIO(kept)).info["icc_profile"] == SRGB


def test_stripped_by_default() -> None:
    data = imgcomp.compress(photo_jpeg(), quality=1)
    assert container.SECTION_METADATA not in container.unpack(data)[1]
    assert read_metadata_section(data) == {}
    image = imgcomp.decompress(data)
    assert "exif" not in image.info and "icc_profile" not in image.info


def test_a_converted_profile_is_not_kept() -> None:
    """Pixels in a non-sRGB space are converted to sRGB on input: the original profile would be
    wrong for them, so only the EXIF travels (an image without a profile means sRGB)."""
    jpeg = photo_jpeg(orientation=1, icc_profile=wide_rgb_profile())
    with pytest.warns(UserWarning, match="converted"):
        result = encode_image(jpeg, 1, lowpass=None, keep_metadata=True)
    metadata = read_metadata_section(result.data)
    assert "icc_profile" not in metadata and "exif" in metadata
    assert result.metadata_bytes == len(container.unpack(result.data)[1][container.SECTION_METADATA])
    assert result.header_bytes == container.header_bytes(result.data)


def test_inputs_without_metadata_write_no_section() -> None:
    array = np.ascontiguousarray(skimage_data.coffee()[:32, :48])
    assert read_metadata(array) == {}
    data = encode_image(array, 1, lowpass=None, keep_metadata=True).data
    assert container.SECTION_METADATA not in container.unpack(data)[1]


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".tif"])
def test_decode_restores_metadata_in_each_format(kept: bytes, tmp_path: Path, suffix: str) -> None:
    (tmp_path / "in.icz").write_bytes(kept)
    out = tmp_path / f"out{suffix}"
    result = subprocess.run(
        [sys.executable, "-m", "imgcomp", "decode", str(tmp_path / "in.icz"), "-o", str(out)], capture_output=True
    )
    assert result.returncode == 0, result.stderr
    with Image.open(out) as image:
        assert image.size == (64, 96)
        assert image.info["icc_profile"] == SRGB
        assert_exif_fields(image.getexif())


def test_encode_command_line_option(tmp_path: Path) -> None:
    (tmp_path / "p.jpg").write_bytes(photo_jpeg())
    for flag, name in (("--keep-metadata", "kept.icz"), (None, "plain.icz")):
        args = [str(tmp_path / "p.jpg"), "-o", str(tmp_path / name), "-q", "1", "--lowpass-block", "0"]
        result = subprocess.run(
            [sys.executable, "-m", "imgcomp", "encode", *args, *([flag] if flag else [])], capture_output=True
        )
        assert result.returncode == 0, result.stderr
    kept = (tmp_path / "kept.icz").read_bytes()
    assert set(read_metadata_section(kept)) == {"icc_profile", "exif"}
    assert read_metadata_section((tmp_path / "plain.icz").read_bytes()) == {}
    info = subprocess.run([sys.executable, "-m", "imgcomp", "info", str(tmp_path / "kept.icz")], capture_output=True)
    assert b"metadata: ICC profile 'sRGB built-in'" in info.stdout


def test_section_format() -> None:
    packed = container.pack_metadata({"icc_profile": b"ICC", "exif": b"Exif\0\0MM\0*rest"})
    assert packed == b"\x01\x03ICC" + b"\x02\x08MM\0*rest"
    assert container.unpack_metadata(packed) == {"icc_profile": b"ICC", "exif": b"MM\0*rest"}
    assert container.unpack_metadata(b"\x09\x02xy" + packed) == container.unpack_metadata(packed)  # unknown: skipped
    with pytest.raises(ImgcompError, match="metadata"):
        container.unpack_metadata(b"\x01\x05ICC")
    assert container.pack_metadata({}) == b""


def test_target_size_counts_the_metadata() -> None:
    from imgcomp.target import encode_to_target

    jpeg = photo_jpeg()
    plain = encode_to_target(jpeg, max_bytes=10**6)
    largest = encode_to_target(jpeg, max_bytes=10**6, keep_metadata=True)
    overhead = largest.result.metadata_bytes + 1 + len(container._varint(largest.result.metadata_bytes))  # + table entry
    assert len(largest.result.data) - len(plain.result.data) == overhead
    budget = len(largest.result.data) - 1  # the largest file with its metadata no longer fits
    kept = encode_to_target(jpeg, max_bytes=budget, keep_metadata=True)
    assert len(kept.result.data) <= budget and kept.result.metadata_bytes > 100
    assert set(read_metadata_section(kept.result.data)) == {"icc_profile", "exif"}
    assert kept.result.header_bytes == container.header_bytes(kept.result.data)
