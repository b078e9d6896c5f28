"""``imgcomp info``: what a file holds, from its header alone, for files of every release."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from skimage import data as skimage_data

from imgcomp import container
from imgcomp.api import encode_image
from imgcomp.errors import ImgcompError
from imgcomp.fileinfo import describe
from imgcomp.zoo import DEFAULT_MODEL, canonical_name

GOLDEN = Path(__file__).parent / "fixtures" / "golden"
FILES = json.loads((GOLDEN / "golden.json").read_text())["files"]


def run(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "imgcomp", *args], input=stdin, capture_output=True)


@pytest.fixture(scope="module")
def v4_file() -> bytes:
    return encode_image(np.ascontiguousarray(skimage_data.coffee()[:64, :96]), 2).data


@pytest.mark.parametrize("row", FILES, ids=[row["file"] for row in FILES])
def test_released_files_are_described(row: dict) -> None:
    info = describe((GOLDEN / row["file"]).read_bytes())
    assert info["format_version"] == (2 if row["version"] == "0.2.0" else 3)
    assert (info["system"], info["system_id"], info["stream_version"]) == ("mentzer2018", 1, 1)
    assert info["stream_readable"] and info["crc"] == "ok"
    assert info["model"] == canonical_name(row["model"])
    assert info["quality"] == row["quality"]
    assert [info["height"], info["width"], 3] == row["decoded_shape"]
    assert info["bytes"] == row["bytes"] == info["header_bytes"] + info["sections"][0]["bytes"]
    assert info["bpp"] == pytest.approx(8 * row["bytes"] / (info["width"] * info["height"]))


def test_v4_file_sections_and_bpp(v4_file: bytes) -> None:
    info = describe(v4_file)
    _, sections = container.unpack(v4_file)
    assert info["format_version"] == 4 and info["model"] == DEFAULT_MODEL and info["quality"] == 2
    assert [(s["kind"], s["bytes"]) for s in info["sections"]] == [(k, len(v)) for k, v in sections.items()]
    assert info["header_bytes"] == container.header_bytes(v4_file)
    payload = sum(len(v) for v in sections.values())
    assert info["payload_bpp"] == pytest.approx(8 * payload / (96 * 64))
    assert info["crc32"] == v4_file[info["header_bytes"] - 4 : info["header_bytes"]][::-1].hex()
    assert "metadata" not in info


def test_model_not_installed_and_planned_system(v4_file: bytes) -> None:
    header, sections = container.unpack(v4_file)
    stranger = container.pack(container.Header(96, 64, 2, b"\x00\x01"), sections)
    assert describe(stranger)["model"] == "not installed"
    from imgcomp.systems import SYSTEM_IDS, available_systems

    for name, number in SYSTEM_IDS.items():  # the systems with an id but no implementation yet
        if name not in available_systems():
            planned = describe(container.pack(container.Header(96, 64, 2, b"\x00\x01", system_id=number), sections))
            assert planned["system"] == name and not planned["system_implemented"] and not planned["stream_readable"]
    with pytest.raises(ImgcompError, match="unknown system id 77"):
        describe(container.pack(container.Header(96, 64, 2, b"\x00\x01", system_id=77), sections))


def test_command_line_text_json_and_errors(v4_file: bytes, tmp_path: Path) -> None:
    good = tmp_path / "good.icz"
    good.write_bytes(v4_file)
    released = GOLDEN / FILES[0]["file"]
    text = run("info", str(good))
    assert text.returncode == 0, text.stderr
    assert b"container version 4" in text.stdout and f"{DEFAULT_MODEL}, quality 2".encode() in text.stdout
    many = run("info", "--json", str(good), str(released))
    assert many.returncode == 0, many.stderr
    records = [json.loads(line) for line in many.stdout.splitlines()]
    assert [r["format_version"] for r in records] == [4, 2] and records[0]["file"] == str(good)
    assert json.loads(run("info", "--json", "-", stdin=v4_file).stdout)["bytes"] == len(v4_file)
    # malformed files: decode's one-line error, exit 2; with several files the good ones are still described
    bad = tmp_path / "bad.icz"
    bad.write_bytes(v4_file[:-1] + bytes([v4_file[-1] ^ 1]))
    info, decode = run("info", str(bad)), run("decode", str(bad), "-o", str(tmp_path / "bad.png"))
    assert info.returncode == decode.returncode == 2 and info.stdout == b""
    assert info.stderr == decode.stderr == b"error: corrupt file: checksum mismatch\n"
    truncated = tmp_path / "truncated.icz"
    truncated.write_bytes(v4_file[:10])
    mixed = run("info", str(truncated), str(good))
    assert mixed.returncode == 2 and b"good.icz: 96x64" in mixed.stdout
    assert mixed.stderr.decode().strip().startswith(f"error: {truncated}: truncated file")
    assert run("info", str(tmp_path / "none.icz")).returncode == 2


def test_info_neither_decodes_nor_imports_torch(v4_file: bytes, tmp_path: Path) -> None:
    path = tmp_path / "f.icz"
    path.write_bytes(v4_file)
    script = (
        "import sys\nfrom imgcomp.cli import main\nsys.argv = ['imgcomp', 'info', sys.argv[1]]\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "assert not any(m.startswith('imgcomp.systems.mentzer2018.stream') for m in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True)
    assert result.returncode == 0, result.stderr
