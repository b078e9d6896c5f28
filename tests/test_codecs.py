"""Classical codecs: round trips, sweeps, headers, chroma settings really applied, registry."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin
from synthetic_images import smooth_image

from imgcomp.codecs import (
    Codec,
    available_codecs,
    codec_factory,
    get_codec,
    parse_codec_names,
    register_codec,
)
from imgcomp.codecs.headers import iter_isobmff_boxes, jpeg_header_bytes
from imgcomp.codecs.registry import _ENTRIES, _INSTANCES
from imgcomp.errors import ImgcompError
from imgcomp.metrics import psnr

BASELINES = ["jpeg420", "jpeg444", "jpeg2000", "webp", "heic444", "avif444", "jpegxl"]

# A high-quality setting per codec and the PSNR it must reach on the noisy gradient (noise sigma 4
# caps what a lossy codec keeps at sane rates).
HIGH_QUALITY = {
    "jpeg420": (95, 33.0),
    "jpeg444": (95, 35.0),
    "jpeg2000": (8.0, 35.0),
    "webp": (95, 33.0),
    "heic444": (90, 36.0),
    "avif444": (95, 36.0),
    "jpegxl": (0.5, 35.0),
}


def test_every_baseline_is_registered():
    assert set(BASELINES) <= set(available_codecs(baseline_only=True))
    for name in BASELINES:
        codec = get_codec(name)
        assert codec.name == name
        assert codec.label
        assert codec.library_version()
        assert 10 <= len(codec.default_settings) <= 14


@pytest.mark.parametrize("name", BASELINES)
@pytest.mark.parametrize("shape", [(48, 64), (17, 33)])
def test_round_trip_shape_and_quality(name, shape):
    codec = get_codec(name)
    image = smooth_image(*shape, seed=1)
    setting, floor = HIGH_QUALITY[name]
    data = codec.encode(image, setting)
    assert isinstance(data, bytes) and len(data) > 0
    decoded = codec.decode(data)
    assert decoded.shape == image.shape
    assert decoded.dtype == np.uint8
    if shape == (48, 64):
        assert psnr(image, decoded) > floor


@pytest.mark.parametrize("name", BASELINES)
def test_bytes_grow_along_the_sweep(name):
    codec = get_codec(name)
    image = smooth_image(48, 64, seed=2)
    sizes = [len(codec.encode(image, setting)) for setting in codec.default_settings]
    assert sizes == sorted(sizes), f"{name}: sizes along the sweep {sizes}"
    assert sizes[-1] > 2 * sizes[0]


@pytest.mark.parametrize("name", BASELINES)
def test_header_split_is_inside_the_file(name):
    codec = get_codec(name)
    data = codec.encode(smooth_image(48, 64), codec.default_settings[len(codec.default_settings) // 2])
    header = codec.header_bytes(data)
    if name == "jpegxl":
        assert header is None  # bit-packed header: no honest byte split
    else:
        assert 0 < header < len(data)


def test_jpeg_header_ends_after_the_sos_segment():
    data = get_codec("jpeg420").encode(smooth_image(48, 64), 50)
    sos = data.index(b"\xff\xda")
    length = int.from_bytes(data[sos + 2 : sos + 4], "big")
    assert jpeg_header_bytes(data) == sos + 2 + length


def test_webp_header_is_riff_chunk_and_frame_header():
    data = get_codec("webp").encode(smooth_image(48, 64), 50)
    assert data[12:16] == b"VP8 "
    assert get_codec("webp").header_bytes(data) == 12 + 8 + 10


def test_jpeg_subsampling_is_applied():
    image = smooth_image(48, 64)
    for name, expected in (("jpeg420", 2), ("jpeg444", 0)):
        with Image.open(io.BytesIO(get_codec(name).encode(image, 75))) as decoded:
            assert JpegImagePlugin.get_sampling(decoded) == expected


def test_jpeg_uses_optimized_huffman_tables():
    image = smooth_image(48, 64)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=75, subsampling="4:2:0", optimize=False)
    assert len(get_codec("jpeg420").encode(image, 75)) < len(buffer.getvalue())


def test_heic_is_444():
    import pillow_heif

    data = get_codec("heic444").encode(smooth_image(48, 64), 50)
    assert pillow_heif.open_heif(io.BytesIO(data)).info["chroma"] == 444


def test_avif_is_444():
    data = get_codec("avif444").encode(smooth_image(48, 64), 50)
    av1c = _find_box(data, b"av1C")
    # av1C byte 2: tier, high_bitdepth, twelve_bit, monochrome, subsampling_x, subsampling_y, ...
    flags = av1c[2]
    assert (flags >> 3) & 1 == 0 and (flags >> 2) & 1 == 0, "chroma is subsampled"
    assert (flags >> 4) & 1 == 0, "monochrome"


def _find_box(data: bytes, box_type: bytes) -> bytes:
    """Depth-first search for a box in an ISOBMFF file (meta is a full box: 4 bytes of flags)."""
    containers = {b"meta": 4, b"iprp": 0, b"ipco": 0}
    stack = [(data, 0)]
    while stack:
        blob, skip = stack.pop()
        for kind, start, end in iter_isobmff_boxes(blob[skip:], "test"):
            content = blob[skip + start : skip + end]
            if kind == box_type:
                return content
            if kind in containers:
                stack.append((content, containers[kind]))
    raise AssertionError(f"no {box_type!r} box")


@pytest.mark.parametrize("name", BASELINES)
def test_garbage_does_not_decode(name):
    with pytest.raises(ImgcompError):
        get_codec(name).decode(b"\x00\x01not an image at all" * 4)


@pytest.mark.parametrize("name", ["jpeg420", "webp", "heic444", "avif444", "jpegxl", "jpeg2000"])
def test_settings_out_of_range_are_refused(name):
    with pytest.raises(ImgcompError, match="must be"):
        get_codec(name).encode(smooth_image(16, 16), 1000)
    with pytest.raises(ImgcompError, match="must be a number"):
        get_codec(name).encode(smooth_image(16, 16), "high")


def test_bad_input_array_is_refused():
    with pytest.raises(ImgcompError):
        get_codec("jpeg420").encode(np.zeros((8, 8), np.uint8), 50)
    with pytest.raises(ImgcompError):
        get_codec("jpeg420").encode(np.zeros((8, 8, 3), np.float32), 50)


def test_unknown_codec_names():
    with pytest.raises(ImgcompError, match="unknown codec 'nope'"):
        get_codec("nope")
    with pytest.raises(ImgcompError, match="unknown codec"):
        parse_codec_names("jpeg420,nope")
    with pytest.raises(ImgcompError, match="twice"):
        parse_codec_names("webp,webp")
    assert parse_codec_names(" jpeg420 , webp ") == ["jpeg420", "webp"]


class _IdentityCodec(Codec):
    """A lossless stand-in for a learned codec: raw bytes with a 4-byte size header."""

    name = "identity-test"
    label = "Identity"
    default_settings = (1,)

    def library_version(self) -> str:
        return "numpy " + np.__version__

    def encode(self, image, setting):
        height, width = image.shape[:2]
        return height.to_bytes(2, "big") + width.to_bytes(2, "big") + image.tobytes()

    def decode(self, data):
        height, width = int.from_bytes(data[:2], "big"), int.from_bytes(data[2:4], "big")
        return np.frombuffer(data[4:], np.uint8).reshape(height, width, 3)

    def header_bytes(self, data):
        return 4


def test_a_new_codec_can_register_itself():
    try:
        register_codec("identity-test", _IdentityCodec)
        assert "identity-test" in available_codecs()
        assert "identity-test" not in available_codecs(baseline_only=True)
        assert codec_factory("identity-test") is _IdentityCodec
        codec = get_codec("identity-test")
        image = smooth_image(8, 8)
        assert np.array_equal(codec.decode(codec.encode(image, 1)), image)
        assert codec.describe()["library"].startswith("numpy")
        with pytest.raises(ImgcompError, match="already registered"):
            register_codec("identity-test", _IdentityCodec)
        with pytest.raises(ImgcompError, match="lower-case"):
            register_codec("Bad Name", _IdentityCodec)
    finally:
        _ENTRIES.pop("identity-test", None)
        _INSTANCES.pop("identity-test", None)
