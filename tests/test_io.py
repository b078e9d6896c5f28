"""imgcomp.io: what load_image accepts, converts and rejects; save_image's safety."""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgcomp.errors import ImgcompError
from imgcomp.io import load_image, save_image, write_atomic


def png_bytes(image: Image.Image, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **params)
    return buffer.getvalue()


def png_16_bit(array: np.ndarray) -> bytes:
    """A 16-bit-per-sample PNG written by hand (Pillow cannot write 16-bit RGB)."""
    height, width = array.shape[:2]
    color_type = 2 if array.ndim == 3 else 0
    raw = b"".join(b"\x00" + array[row].astype(">u2").tobytes() for row in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def random_rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_one_pixel_image(tmp_path: Path) -> None:
    path = tmp_path / "one.png"
    Image.new("RGB", (1, 1), (10, 20, 30)).save(path)
    array = load_image(path)
    assert array.shape == (1, 1, 3) and array.dtype == np.uint8
    assert array[0, 0].tolist() == [10, 20, 30]


def test_odd_size_round_trip(tmp_path: Path) -> None:
    original = random_rgb(13, 7)  # 7 wide, 13 high
    path = save_image(original, tmp_path / "odd.png")
    loaded = load_image(path)
    assert loaded.shape == (13, 7, 3)
    np.testing.assert_array_equal(loaded, original)


def test_grayscale_is_expanded_to_rgb() -> None:
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    array = load_image(png_bytes(Image.fromarray(gray, "L")))
    assert array.shape == (3, 4, 3)
    for channel in range(3):
        np.testing.assert_array_equal(array[:, :, channel], gray)


def test_rgba_alpha_is_dropped_with_a_warning() -> None:
    rgba = np.dstack([random_rgb(5, 6), np.full((5, 6), 128, np.uint8)])
    with pytest.warns(UserWarning, match="alpha channel dropped"):
        array = load_image(png_bytes(Image.fromarray(rgba, "RGBA")))
    np.testing.assert_array_equal(array, rgba[:, :, :3])


def test_palette_image_becomes_rgb() -> None:
    palette_image = Image.new("P", (4, 2))
    palette_image.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    palette_image.putdata([0, 1, 0, 1, 1, 0, 1, 0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an opaque palette image must not warn
        array = load_image(png_bytes(palette_image))
    assert array.shape == (2, 4, 3)
    assert array[0, 0].tolist() == [255, 0, 0] and array[0, 1].tolist() == [0, 255, 0]


def test_palette_with_transparency_warns() -> None:
    palette_image = Image.new("P", (2, 2))
    palette_image.putpalette([0, 0, 255] * 256)
    with pytest.warns(UserWarning, match="alpha"):
        array = load_image(png_bytes(palette_image, transparency=0))
    assert array[0, 0].tolist() == [0, 0, 255]


@pytest.mark.parametrize("shape", [(4, 5), (4, 5, 3)], ids=["gray16", "rgb16"])
def test_16_bit_images_are_rejected(shape: tuple[int, ...]) -> None:
    array = (np.arange(np.prod(shape)).reshape(shape) * 997 % 65536).astype(np.uint16)
    with pytest.raises(ImgcompError, match="16-bit"):
        load_image(png_16_bit(array))


def test_truncated_png_is_a_clear_error(tmp_path: Path) -> None:
    data = png_bytes(Image.fromarray(random_rgb(64, 64)))
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImgcompError, match="corrupt or truncated"):
        load_image(path)


def test_text_file_is_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("this is not a picture\n")
    with pytest.raises(ImgcompError, match="not an image"):
        load_image(path)


def test_empty_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImgcompError, match="empty.jpg"):
        load_image(path)


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(ImgcompError, match="no such file"):
        load_image(tmp_path / "absent.png")


def test_bytes_input() -> None:
    original = random_rgb(8, 9)
    data = png_bytes(Image.fromarray(original))
    np.testing.assert_array_equal(load_image(data), original)
    np.testing.assert_array_equal(load_image(bytearray(data)), original)


def test_array_validation() -> None:
    with pytest.raises(ImgcompError, match="uint8"):
        load_image(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ImgcompError, match="shape"):
        load_image(np.zeros((4, 4, 2), np.uint8))


def test_save_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    path = tmp_path / "out.png"
    first, second = random_rgb(4, 4, seed=1), random_rgb(4, 4, seed=2)
    save_image(first, path)
    with pytest.raises(ImgcompError, match="exists"):
        save_image(second, path)
    np.testing.assert_array_equal(load_image(path), first)
    save_image(second, path, force=True)
    np.testing.assert_array_equal(load_image(path), second)


def test_save_rejects_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(ImgcompError, match="suffix"):
        save_image(random_rgb(4, 4), tmp_path / "out.unknown")
    assert list(tmp_path.iterdir()) == []


def test_failed_save_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_save(self, handle, format=None, **params):
        handle.write(b"\x89PNG partial")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_image(random_rgb(4, 4), tmp_path / "out.png")
    assert list(tmp_path.iterdir()) == []


def test_write_atomic_keeps_the_old_file_on_failure(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(b"old")

    def failing_writer(handle):
        handle.write(b"half of the new")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        write_atomic(path, failing_writer)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["data.bin"]


def test_read_only_arrays_convert_without_warnings() -> None:
    from imgcomp.tensors import image_to_tensor

    image = np.asarray(Image.new("RGB", (5, 3), (10, 20, 30)))  # Pillow's buffer: read-only
    assert not image.flags.writeable
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x = image_to_tensor(image)
    assert x.shape == (1, 3, 3, 5) and float(x[0, 2, 0, 0]) == 30.0


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(tmp_path: Path, orientation: int) -> None:
    """A JPEG stored 4 wide and 2 high that a viewer turns (orientations 5-8) loads 2 wide; the
    pixel a viewer shows top-left comes out top-left."""
    from PIL import ImageOps

    stored = Image.fromarray(np.arange(4 * 2 * 3, dtype=np.uint8).reshape(2, 4, 3) * 10, "RGB")
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "turned.png"
    stored.save(path, exif=exif.tobytes())
    shown = np.array(ImageOps.exif_transpose(Image.open(path)))
    loaded = load_image(path)
    assert loaded.shape == ((4, 2, 3) if orientation >= 5 else (2, 4, 3))
    assert np.array_equal(loaded, shown)
    assert np.array_equal(load_image(path.read_bytes()), shown)
    assert np.array_equal(load_image(Image.open(path)), shown)


def wide_rgb_profile() -> bytes:
    """A minimal ICC v2 RGB display profile (Adobe RGB primaries adapted to D50, gamma 2.2),
    written by hand: no such file ships with Pillow or the test machine."""

    def s15(value: float) -> bytes:
        return struct.pack(">i", round(value * 65536))

    def xyz(x: float, y: float, z: float) -> bytes:
        return b"XYZ " + bytes(4) + s15(x) + s15(y) + s15(z)

    text = b"Wide test RGB\0"
    desc = b"desc" + bytes(4) + struct.pack(">I", len(text)) + text + bytes(4 + 4 + 2 + 1 + 67)
    curve = b"curv" + bytes(4) + struct.pack(">IH", 1, round(2.2 * 256)) + bytes(2)
    tags = [
        (b"desc", desc), (b"wtpt", xyz(0.9642, 1.0, 0.8249)), (b"rXYZ", xyz(0.6097, 0.3111, 0.0195)),
        (b"gXYZ", xyz(0.2053, 0.6257, 0.0609)), (b"bXYZ", xyz(0.1492, 0.0632, 0.7446)),
        (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve),
    ]
    offset = 128 + 4 + 12 * len(tags)
    table, body = b"", b""
    for signature, data in tags:
        data += bytes(-len(data) % 4)
        table += signature + struct.pack(">II", offset + len(body), len(data))
        body += data
    size = offset + len(body)
    header = (
        struct.pack(">I", size) + bytes(4) + struct.pack(">I", 0x02100000) + b"mntrRGB XYZ "
        + bytes(12) + b"acsp" + bytes(24) + struct.pack(">I", 0) + xyz(0.9642, 1.0, 0.8249)[8:]
        + bytes(48)
    )
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + body


def test_icc_profiles_other_than_srgb_are_converted(tmp_path: Path) -> None:
    from PIL import ImageCms

    array = random_rgb(8, 8)
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an sRGB profile changes nothing and says nothing
        assert np.array_equal(load_image(png_bytes(Image.fromarray(array), icc_profile=srgb)), array)
    with pytest.warns(UserWarning, match="'Wide test RGB' to sRGB"):
        converted = load_image(png_bytes(Image.fromarray(array), icc_profile=wide_rgb_profile()))
    expected = ImageCms.profileToProfile(
        Image.fromarray(array), ImageCms.ImageCmsProfile(io.BytesIO(wide_rgb_profile())),
        ImageCms.createProfile("sRGB"), outputMode="RGB",
    )
    assert np.array_equal(converted, np.array(expected)) and not np.array_equal(converted, array)
    with pytest.warns(UserWarning, match="unreadable ICC profile"):
        assert np.array_equal(load_image(png_bytes(Image.fromarray(array), icc_profile=b"junk")), array)


def test_dangling_symlink_counts_as_existing(tmp_path: Path) -> None:
    from imgcomp.io import check_writable

    link = tmp_path / "out.png"
    link.symlink_to(tmp_path / "missing-target.png")
    with pytest.raises(ImgcompError, match="exists"):
        check_writable([link], force=False)
    with pytest.raises(ImgcompError, match="exists"):
        save_image(random_rgb(4, 4), link)
    assert link.is_symlink() and not (tmp_path / "missing-target.png").exists()


def test_duplicate_outputs_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    from imgcomp.io import check_writable

    with pytest.raises(ImgcompError, match="two outputs"):
        check_writable([tmp_path / "a.icz", tmp_path / "sub" / ".." / "a.icz"], force=True)


def test_exclusive_write_never_replaces_a_file_created_after_the_check(tmp_path: Path) -> None:
    """The race: the check passes, another process creates the file, then the write comes."""
    from imgcomp.io import check_writable

    target = tmp_path / "out.icz"
    check_writable([target], force=False)
    target.write_bytes(b"someone else's")
    with pytest.raises(ImgcompError, match="exists"):
        write_atomic(target, lambda handle: handle.write(b"ours"), overwrite=False)
    assert target.read_bytes() == b"someone else's"
    assert [p.name for p in tmp_path.iterdir()] == ["out.icz"]  # no temporary left behind
    write_atomic(target, lambda handle: handle.write(b"ours"), overwrite=True)
    assert target.read_bytes() == b"ours"
