"""``imgcomp encode`` / ``decode`` as image tools are used: pipes, batches in parallel, target sizes."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as skimage_data

from imgcomp.api import decode_image, encode_image
from imgcomp.errors import ImgcompError
from imgcomp.target import encode_to_target


def run(*args: str, stdin: bytes = b"", cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "imgcomp", *args], input=stdin, capture_output=True, cwd=cwd)


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    """Three small natural photos (scikit-image), 96x128."""
    return [
        np.ascontiguousarray(image[:96, :128]) for image in
        (skimage_data.astronaut()[100:], skimage_data.coffee()[150:], skimage_data.chelsea()[80:, 100:])
    ]


def test_pipes_in_and_out(photos, tmp_path: Path) -> None:
    encoded = run("encode", "-", "-o", "-", "--quality", "2", stdin=png(photos[0]))
    assert encoded.returncode == 0, encoded.stderr
    assert encoded.stdout == encode_image(photos[0], 2).data  # only the file on stdout
    assert b"bytes=" in encoded.stderr  # the record goes to stderr
    decoded = run("decode", "-", "-o", "-", stdin=encoded.stdout)
    assert decoded.returncode == 0, decoded.stderr
    assert np.array_equal(np.array(Image.open(io.BytesIO(decoded.stdout))), decode_image(encoded.stdout))
    webp = run("decode", "-", "-o", "-", "--format", "webp", stdin=encoded.stdout)
    assert webp.returncode == 0 and Image.open(io.BytesIO(webp.stdout)).format == "WEBP"
    (tmp_path / "x.icz").write_bytes(encoded.stdout)
    to_file = run("decode", "-", "-o", str(tmp_path / "x.png"), stdin=encoded.stdout)
    assert to_file.returncode == 0 and to_file.stdout.startswith(b"input=-")


@pytest.mark.parametrize("command", ["encode", "decode"])
def test_empty_or_bad_standard_input_is_one_line_and_no_output(command: str, tmp_path: Path) -> None:
    empty = run(command, "-", "-o", "-")
    assert empty.returncode == 2 and empty.stdout == b""
    assert empty.stderr.decode().strip() == "error: -: standard input is empty"
    junk = run(command, "-", "-o", str(tmp_path / "out.bin"), stdin=b"not an image")
    assert junk.returncode == 2 and b"Traceback" not in junk.stderr and not (tmp_path / "out.bin").exists()
    alone = run(command, "-", str(tmp_path / "other"), "-o", str(tmp_path))
    assert alone.returncode == 2 and b"only" in alone.stderr


def test_parallel_batch_writes_the_serial_bytes(photos, tmp_path: Path) -> None:
    for index, array in enumerate(photos):
        Image.fromarray(array).save(tmp_path / f"p{index}.png")
    inputs = [str(tmp_path / f"p{index}.png") for index in range(len(photos))]
    (tmp_path / "serial").mkdir()
    (tmp_path / "parallel").mkdir()
    serial = run("encode", *inputs, "-o", str(tmp_path / "serial"), "-q", "3")
    parallel = run("encode", *inputs, "-o", str(tmp_path / "parallel"), "-q", "3", "--jobs", "2")
    assert serial.returncode == 0 and parallel.returncode == 0, parallel.stderr
    assert b"3 files" in parallel.stdout and b"2 job(s)" in parallel.stdout
    for index in range(len(photos)):
        name = f"p{index}.icz"
        assert (tmp_path / "parallel" / name).read_bytes() == (tmp_path / "serial" / name).read_bytes()
    decoded = run("decode", *[str(p) for p in sorted((tmp_path / "parallel").iterdir())], "--jobs", "2")
    assert decoded.returncode == 0, decoded.stderr
    assert len(list((tmp_path / "parallel").glob("*.png"))) == 3


def test_batch_with_colliding_output_names_writes_nothing(photos, tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    Image.fromarray(photos[0]).save(tmp_path / "a" / "same.png")
    Image.fromarray(photos[1]).save(tmp_path / "b" / "same.png")
    (tmp_path / "out").mkdir()
    result = run("encode", str(tmp_path / "a" / "same.png"), str(tmp_path / "b" / "same.png"), "-o", str(tmp_path / "out"))
    assert result.returncode == 2 and b"two outputs" in result.stderr
    assert list((tmp_path / "out").iterdir()) == []
    missing = run("encode", str(tmp_path / "a" / "same.png"), str(tmp_path / "nope.png"), "-o", str(tmp_path / "out"))
    assert missing.returncode == 2 and b"nope.png: no such file" in missing.stderr
    assert list((tmp_path / "out").iterdir()) == []  # checked before the first file is coded


def test_target_size_is_the_largest_file_within_budget(photos) -> None:
    """On three photos, a budget between two qualities' default files: the chosen file is within
    it and at least as large as every default file within it; below the smallest, an error."""
    for array in photos:
        defaults = [len(encode_image(array, quality).data) for quality in range(1, 6)]
        budget = (defaults[2] + defaults[3]) // 2
        chosen = encode_to_target(array, max_bytes=budget)
        size = len(chosen.result.data)
        assert chosen.smallest_bytes <= size <= budget
        assert all(size >= d for d in defaults if d <= budget)
        assert decode_image(chosen.result.data).shape == array.shape
    with pytest.raises(ImgcompError, match=f"the smallest is {chosen.smallest_bytes} bytes"):
        encode_to_target(array, max_bytes=chosen.smallest_bytes - 1)
    unlimited = encode_to_target(array, max_bytes=10**9)  # above the largest: the largest file
    assert len(unlimited.result.data) == unlimited.largest_bytes


def test_target_size_on_the_command_line(photos, tmp_path: Path) -> None:
    Image.fromarray(photos[1]).save(tmp_path / "p.png")
    ok = run("encode", str(tmp_path / "p.png"), "--target-bpp", "0.5", "--json")
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "p.icz").stat().st_size <= 0.5 * 96 * 128 / 8
    too_small = run("encode", str(tmp_path / "p.png"), "-o", str(tmp_path / "q.icz"), "--target-size", "10")
    assert too_small.returncode == 2 and b"smallest is" in too_small.stderr and not (tmp_path / "q.icz").exists()
    both = run("encode", str(tmp_path / "p.png"), "--target-size", "900", "--quality", "2", "--force")
    assert both.returncode == 2 and b"--target-size" in both.stderr


def test_encode_variants_write_what_encode_image_writes(photos) -> None:
    """The target search's shortcut: one system encode, several low-pass sections, the same bytes."""
    from imgcomp.api import encode_variants
    from imgcomp.postfilter.lowpass import AUTO, LowpassSettings
    from imgcomp.zoo import get_model

    options = [None, AUTO, LowpassSettings(16, 2), LowpassSettings(64, 8)]
    variants = encode_variants(photos[2], 3, get_model(), options)
    for option, variant in zip(options, variants):
        expected = encode_image(photos[2], 3, lowpass=option)
        assert variant.data == expected.data and variant.lowpass == expected.lowpass
