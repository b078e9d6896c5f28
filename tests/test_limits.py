"""Resource limits (imgcomp.limits): hostile headers, the pixel limit, the bytes-per-pixel floor,
allocation failures, and the fuzzer run in a subprocess whose peak memory is read back."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from imgcomp import container, limits
from imgcomp.api import decode_image, encode_image
from imgcomp.errors import ImgcompError
from imgcomp.models.export import export_model, load_model
from imgcomp.systems import create_model
from imgcomp.systems.mentzer2018.config import preset
from synthetic_images import smooth_image

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _env(**extra: str) -> dict:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    env.pop(limits.ENV_MAX_PIXELS, None)
    return {**env, **extra}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    config = preset("tiny", importance_heads=2)
    model = create_model(config)
    for p in model.context_model.parameters():
        torch.nn.init.normal_(p, std=0.2)
    K = config.latent_channels
    with torch.no_grad():
        model.encoder[-1].weight[:K] *= 30.0
        model.encoder[-1].bias[K] = -3.0
        model.encoder[-1].bias[K + 1] = 3.0
    model.eval()
    return export_model(model, tmp_path_factory.mktemp("model") / "tiny")


def v4_file(tag: bytes, width: int, height: int, payload: bytes, quality: int = 1) -> bytes:
    head = container.MAGIC + bytes([(4 << 4) | (quality - 1), 1, 1]) + tag
    head += container._varint(width - 1) + container._varint(height - 1) + bytes([1, 0]) + container._varint(len(payload))
    return head + struct.pack("<I", zlib.crc32(payload, zlib.crc32(head))) + payload


def v2_file(tag: bytes, width: int, height: int, payload: bytes, quality: int = 1) -> bytes:
    head = container.MAGIC + bytes([(2 << 4) | (quality - 1)]) + tag
    head += container._varint(width - 1) + container._varint(height - 1) + container._varint(len(payload) // 4)
    return head + struct.pack("<I", zlib.crc32(payload, zlib.crc32(head))) + payload


def _tag(model_dir: Path) -> bytes:
    return container.model_tag(load_model(model_dir).weights_sha256)


def test_the_18_byte_file_and_its_siblings_fail_fast(model_dir: Path, tmp_path: Path) -> None:
    """Headers claiming huge images with tiny payloads: one ImgcompError, < 1 s, < 200 MB, for the
    library call (in a fresh process, model loaded) and for `imgcomp decode` (exit 2)."""
    tag = _tag(model_dir)
    one_word = b"\0\0\0\0"
    files = {
        "v4-8192-empty": v4_file(tag, 8192, 8192, b""),  # the 18-byte file
        "v4-16384-word": v4_file(tag, 16384, 16384, one_word),
        "v4-65535-word": v4_file(tag, 65535, 65535, one_word),
        "v4-16384-floor": v4_file(tag, 16384, 16384, bytes(limits.min_payload_bytes(16384, 16384))),
        "v2-16384-word": v2_file(tag, 16384, 16384, one_word),
        "v2-65535-word": v2_file(tag, 65535, 65535, one_word),
    }
    assert len(files["v4-8192-empty"]) == 18
    for name, data in files.items():
        (tmp_path / f"{name}.icz").write_bytes(data)
    script = textwrap.dedent(f"""
        import json, sys, time
        from imgcomp.api import decode_image
        from imgcomp.fuzz import peak_rss_bytes
        from imgcomp.errors import ImgcompError
        from imgcomp.zoo import get_model
        model = get_model({str(model_dir)!r})
        results = {{}}
        for name in {sorted(files)!r}:
            data = open({str(tmp_path)!r} + "/" + name + ".icz", "rb").read()
            before = peak_rss_bytes()
            started = time.perf_counter()
            try:
                decode_image(data, model=model)
                outcome = "decoded"
            except ImgcompError as exc:
                outcome = str(exc)
            after = peak_rss_bytes()
            results[name] = [outcome, time.perf_counter() - started, after - before]
        print(json.dumps(results))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=_env(), timeout=300)
    assert done.returncode == 0, done.stderr
    for name, (outcome, seconds, grown) in json.loads(done.stdout).items():
        assert outcome != "decoded", name
        assert seconds < 1.0 and grown < 200e6, (name, outcome, seconds, grown)
    for name in ("v4-8192-empty", "v4-65535-word", "v2-16384-word"):
        code = "import runpy, sys; from imgcomp.fuzz import peak_rss_bytes; sys.argv = ['imgcomp', 'decode', sys.argv[1], '-o', sys.argv[2]]\n"
        code += "try:\n    runpy.run_module('imgcomp', run_name='__main__')\nfinally:\n"
        code += "    sys.stderr.write('RSS %d' % peak_rss_bytes())\n"
        done = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path / f"{name}.icz"), str(tmp_path / f"{name}.png")],
            capture_output=True, text=True, env=_env(), timeout=300,
        )
        assert done.returncode == 2, (name, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert lines[0].startswith("error:") and "Traceback" not in done.stderr, done.stderr
        assert int(lines[-1].split("RSS")[-1]) < 200e6, done.stderr
        assert not (tmp_path / f"{name}.png").exists()


def test_degenerate_images_are_padded_to_the_floor(model_dir: Path) -> None:
    """A head that masks every channel codes a few bytes; the encoder pads the payload with zero
    words so the file meets the version-4 floor, and it decodes to the same pixels."""
    loaded = load_model(model_dir)
    K = loaded.config.latent_channels
    with torch.no_grad():
        loaded.model.encoder[-1].bias[K] = -40.0  # every channel masked
    image = np.full((256, 320, 3), 128, np.uint8)
    result = encode_image(image, quality=1, model=loaded, keep_reconstruction=True, lowpass=None)
    assert result.payload_bytes >= limits.min_payload_bytes(320, 256) == 20
    assert np.array_equal(decode_image(result.data, model=loaded), result.reconstruction)
    header, sections = container.unpack(result.data)
    short = {0: sections[0][:4]}
    with pytest.raises(ImgcompError, match="too small"):
        container.pack(header, short)


def test_pixel_limit_argument_and_environment(model_dir: Path, monkeypatch) -> None:
    image = np.zeros((40, 50, 3), np.uint8)
    with pytest.raises(ImgcompError, match="limit of"):
        encode_image(image, model=model_dir, max_pixels=1999)
    data = encode_image(image, model=model_dir, max_pixels=2000).data
    with pytest.raises(ImgcompError, match="--max-pixels"):
        decode_image(data, model=model_dir, max_pixels=100)
    monkeypatch.setenv(limits.ENV_MAX_PIXELS, "100")
    with pytest.raises(ImgcompError, match="limit of"):
        decode_image(data, model=model_dir)
    assert decode_image(data, model=model_dir, max_pixels=2000).shape == (40, 50, 3)  # the argument wins
    monkeypatch.setenv(limits.ENV_MAX_PIXELS, "lots")
    with pytest.raises(ImgcompError, match="IMGCOMP_MAX_PIXELS"):
        decode_image(data, model=model_dir)
    monkeypatch.delenv(limits.ENV_MAX_PIXELS)
    assert limits.max_pixels() == limits.DEFAULT_MAX_PIXELS == 8192 * 8192
    # the default fits a 24 GB machine with room to spare
    assert limits.estimate_bytes("encode", 8192, 8192) < 12.5e9
    assert limits.estimate_bytes("decode", 8192, 8192) < 12.5e9


def test_allocation_failures_become_the_library_error(model_dir: Path, monkeypatch) -> None:
    import imgcomp.api as api

    data = encode_image(np.zeros((16, 16, 3), np.uint8), model=model_dir).data

    def torch_oom(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: not enough memory: you tried to allocate 4294967296 bytes.")

    def python_oom(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(api, "_decode_sections", torch_oom)
    with pytest.raises(ImgcompError, match="out of memory.*16x16"):
        decode_image(data, model=model_dir)
    monkeypatch.setattr(api, "_encode_pixels", python_oom)
    with pytest.raises(ImgcompError, match="out of memory"):
        encode_image(np.zeros((16, 16, 3), np.uint8), model=model_dir)

    def other(*args, **kwargs):
        raise RuntimeError("a bug, not memory")

    monkeypatch.setattr(api, "_decode_sections", other)
    with pytest.raises(RuntimeError, match="a bug"):
        decode_image(data, model=model_dir)


def _huge_png(path: Path, width: int, height: int) -> None:
    """A valid all-black PNG written row by row (never held in memory)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    packer = zlib.compressobj(9)
    row = bytes(1 + 3 * width)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def test_a_144_megapixel_encode_is_refused_in_one_line(model_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "huge.png"
    _huge_png(source, 12000, 12000)
    with Image.open(source) as image:
        assert image.size == (12000, 12000)
    code = "import runpy, sys; from imgcomp.fuzz import peak_rss_bytes; sys.argv = ['imgcomp'] + sys.argv[1:]\n"
    code += "try:\n    runpy.run_module('imgcomp', run_name='__main__')\nfinally:\n"
    code += "    sys.stderr.write('RSS %d' % peak_rss_bytes())\n"
    done = subprocess.run(
        [sys.executable, "-c", code, "encode", str(source), "-m", str(model_dir), "-o", str(tmp_path / "huge.icz")],
        capture_output=True, text=True, env=_env(), timeout=300,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith("error:") and "12000x12000" in lines[0] and "limit" in lines[0], done.stderr
    assert int(lines[-1].split("RSS")[-1]) < 1e9  # refused before the pixels were decoded
    done = subprocess.run(
        [sys.executable, "-m", "imgcomp", "encode", str(source), "-m", str(model_dir), "--max-pixels", "1000"],
        capture_output=True, text=True, env=_env(), timeout=300,
    )
    assert done.returncode == 2 and "limit of 0.0 megapixels" in done.stderr, done.stderr


def _fuzz_in_a_subprocess(model_dir: Path, cases: int) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "imgcomp.fuzz", str(model_dir), str(cases), str(1 << 16), "0"],
        capture_output=True, text=True, env=_env(), timeout=600,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["failures"] == [], report["failures"][:3]
    assert report["cases"] == cases and report["decoded"] > cases // 30 and report["errors"] > cases // 3
    assert report["worst_seconds"] < 2.0, report
    assert report["peak_rss"] < 1e9, report


def test_fuzz_in_a_subprocess(model_dir: Path) -> None:
    """3000 seeded mutations of small valid files (checksums repaired 3 times in 4): each ends in
    ImgcompError or an image, none takes over 2 s, the process stays under 1 GB."""
    _fuzz_in_a_subprocess(model_dir, 3000)


def test_fuzz_a_rippel2017_model_in_a_subprocess(tmp_path: Path) -> None:
    """The same for Rippel & Bourdev's bitplane coder (a tiny model, its table counted on an image)."""
    from imgcomp.systems.rippel2017 import stream
    from imgcomp.systems.rippel2017.config import preset as rippel_preset
    from imgcomp.systems.rippel2017.model import RippelCodec

    torch.manual_seed(0)
    model = RippelCodec(rippel_preset("tiny")).eval()
    pixels = smooth_image(64, 96, seed=2, noise=10.0)
    stream.count_table_on(model, pixels, (1, 2))
    _fuzz_in_a_subprocess(export_model(model, tmp_path / "rippel"), 2000)
