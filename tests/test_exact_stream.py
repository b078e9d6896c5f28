"""Mentzer et al. stream version 2: P and the low-pass layer in exact integer arithmetic.

Files of every shipped Mentzer et al. model round-trip in stream version 2 (the default) and find their model
by a tag that covers the integer P; the shipped ``context-int.safetensors`` rebuild from the
committed calibration ranges; a folder without one writes stream version 1; and a whole file
encoded under one BLAS kernel / thread count / torch CPU capability decodes to the same symbols,
low-pass offsets and pixels under the others (in fresh processes).
"""

from __future__ import annotations

import hashlib
import itertools
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from imgcomp import container
from imgcomp.api import decode_image, encode_image
from imgcomp.entropy import SymbolDecoder, SymbolEncoder
from imgcomp.errors import ImgcompError
from imgcomp.io import load_image
from imgcomp.postfilter.lowpass import (
    EXACT_FREQUENCY_BITS, LowpassSettings, decode_offsets, encode_offsets, exact_laplace_probabilities,
)
from imgcomp.systems.mentzer2018 import stream
from imgcomp.zoo import coding_system, get_model, shipped_models

ROOT = Path(__file__).parents[1]
DEMO = ROOT / "src" / "imgcomp" / "assets" / "demo.png"
RANGES = ROOT / "docs" / "results" / "integer-context"
MENTZER_MODELS = [  # the shipped models coded by mentzer2018 (Patel et al.'s too), which have an integer P
    name for name, folder in shipped_models().items() if coding_system(name, folder) == "mentzer2018"
]


def _crop(top: int = 180, left: int = 300, height: int = 64, width: int = 96) -> np.ndarray:
    return np.ascontiguousarray(load_image(DEMO)[top : top + height, left : left + width])


def _tag(weights_sha256: str, params_sha256: str) -> bytes:
    return hashlib.sha256(bytes.fromhex(weights_sha256) + bytes.fromhex(params_sha256)).digest()[:2]


@pytest.mark.parametrize("name", MENTZER_MODELS)
def test_every_shipped_model_writes_exact_files_that_round_trip(name: str) -> None:
    from imgcomp.systems.mentzer2018.integer_context import params_sha256

    loaded = get_model(name)
    params = stream.integer_params(loaded)
    assert params is not None and params.compute_dtype() == np.float32
    image = _crop()
    for quality, lowpass in ((1, None), (loaded.system.qualities(loaded), "auto")):
        result = encode_image(image, quality, loaded, keep_reconstruction=True, lowpass=lowpass)
        header, sections = container.unpack(result.data)
        assert header.stream_version == 2 and header.system_id == 1
        assert header.model_tag == _tag(loaded.weights_sha256, params_sha256(params))
        # found by tag; torch's decoder is the encoder's, numpy's may round a pixel the other way
        assert np.array_equal(decode_image(result.data, engine="torch"), result.reconstruction), (name, quality)
        numpy_pixels = decode_image(result.data, model=name).astype(int)
        assert np.abs(numpy_pixels - result.reconstruction).max() <= 1, (name, quality)
        assert np.mean(numpy_pixels != result.reconstruction) < 1e-3, (name, quality)
        assert 8 * result.payload_bytes <= result.estimated_bits * 1.01 + 64
    # the float version is still written on request, with the old tag, and decodes
    old = encode_image(image, 1, loaded, lowpass=None, keep_reconstruction=True, stream_version=1)
    header, _ = container.unpack(old.data)
    assert header.stream_version == 1 and header.model_tag == bytes.fromhex(loaded.weights_sha256)[:2]
    assert np.array_equal(decode_image(old.data), old.reconstruction)


@pytest.mark.parametrize("name", MENTZER_MODELS)
def test_shipped_integer_models_rebuild_from_the_committed_ranges(name: str, tmp_path: Path) -> None:
    """``python -m imgcomp.systems.mentzer2018.integer_context.build`` with the committed ranges gives the shipped file's arrays."""
    from imgcomp.systems.mentzer2018.integer_context import params_sha256
    from imgcomp.systems.mentzer2018.integer_context.build import build_params

    loaded = get_model(name)
    ranges = RANGES / f"calibration-ranges-{name.replace('/', '-')}.json"
    assert ranges.is_file()
    assert params_sha256(build_params(loaded, str(ranges))) == params_sha256(stream.integer_params(loaded))


def test_a_model_folder_without_the_integer_model_writes_stream_version_1(tmp_path: Path) -> None:
    source = shipped_models()["mentzer2018/cpu-colour-lp"]
    folder = tmp_path / "model"
    folder.mkdir()
    for file in ("model.safetensors", "config.json"):
        shutil.copy(source / file, folder / file)
    image = _crop(height=32, width=40)
    with pytest.warns(UserWarning, match="stream version 1"):
        result = encode_image(image, 2, folder, lowpass=None, keep_reconstruction=True)
    assert container.unpack(result.data)[0].stream_version == 1
    assert np.array_equal(decode_image(result.data, model=folder), result.reconstruction)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per loaded model
        encode_image(image, 2, folder, lowpass=None)
    exact = encode_image(image, 2, lowpass=None).data  # the shipped folder: version 2
    with pytest.raises(ImgcompError, match="different model"):
        decode_image(exact, model=folder)


def test_unknown_stream_versions_are_refused() -> None:
    image = _crop(height=16, width=16)
    with pytest.raises(ImgcompError, match="stream version"):
        encode_image(image, 1, stream_version=3)
    data = encode_image(image, 1, lowpass=None).data
    header, sections = container.unpack(data)
    bumped = container.pack(container.Header(16, 16, 1, header.model_tag, 1, 9), sections)
    with pytest.raises(ImgcompError, match="stream version 9"):
        decode_image(bumped)


def test_exact_laplace_rows_are_integer_frequencies() -> None:
    total = 1 << EXACT_FREQUENCY_BITS
    for scale_code, radius in ((1, 4), (4, 64), (37, 128), (255, 510)):
        row = exact_laplace_probabilities(scale_code, radius)
        freqs = row * total
        assert row.shape == (2 * radius + 1,) and np.array_equal(freqs, np.rint(freqs))
        assert freqs.min() >= 1 and freqs.sum() == total and row.sum() == 1.0
        assert np.array_equal(freqs, freqs[::-1]) and freqs.argmax() == radius
    # pinned: decimal's exp is correctly rounded, so these are the same everywhere
    digest = hashlib.sha256(b"".join(exact_laplace_probabilities(c, 128).tobytes() for c in (1, 4, 37, 255))).hexdigest()
    assert digest == PINNED_LAPLACE_SHA256


PINNED_LAPLACE_SHA256 = "8b3be4e606a92e8cc337a2e4733e4f3f8d7d88f2c934f9c18a0418cbc55fbba2"


@pytest.mark.parametrize("settings", [LowpassSettings(32, 4), LowpassSettings(16, 1)])
def test_exact_low_pass_coding_round_trips_and_costs_about_the_same(settings: LowpassSettings) -> None:
    rng = np.random.default_rng(3)
    offsets = np.clip(np.cumsum(rng.laplace(0, 2, (3, 9, 14)), axis=2).round(), -settings.limit, settings.limit).astype(np.int64)
    sizes = {}
    for version in (1, 2):
        encoder = SymbolEncoder()
        bits = encode_offsets(encoder, offsets, settings, version)
        data = encoder.finish()
        decoded, got = decode_offsets(SymbolDecoder(data), 9 * settings.block, 14 * settings.block, version)
        assert got == settings and np.array_equal(decoded, offsets)
        sizes[version] = bits
    assert sizes[2] == pytest.approx(sizes[1], rel=0.02)


# ----------------------------------------------------------------------------- across machines

def _cross(encoder_setting, decoder_settings, tmp_path: Path, quality: int = 3, size=(64, 96)) -> None:
    """Encode a demo crop in a fresh process under ``encoder_setting``; decode in fresh processes
    under each of ``decoder_settings``: same symbols, low-pass offsets and pixels everywhere."""
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    from cross_file import run_file_child

    image = tmp_path / "crop.png"
    Image.fromarray(_crop(150, 280, *size)).save(image)
    made = run_file_child(["encode-file", str(image), str(tmp_path / "x.icz"), str(quality), "2"], *encoder_setting)
    assert "error" not in made, made
    reference = decode_image((tmp_path / "x.icz").read_bytes())

    def decode(index_setting):
        index, setting = index_setting
        copy = tmp_path / f"x{index}.icz"
        shutil.copy(tmp_path / "x.icz", copy)
        npy, numpy_npy = Path(str(copy) + ".npy"), Path(str(copy) + ".numpy.npy")
        result = run_file_child(["decode-file", str(copy)], *setting)
        return result, (np.load(npy) if npy.exists() else None), (np.load(numpy_npy) if numpy_npy.exists() else None)

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(decode, enumerate(decoder_settings)))
    first = results[0][0]
    assert first.get("stream_version") == 2 and first.get("lowpass"), first
    for setting, (result, pixels, numpy_pixels) in zip(decoder_settings, results):
        assert "error" not in result, (setting, result)
        for key in ("symbols_sha256", "offsets_sha256", "lowpass"):
            assert result[key] == first[key], (setting, key, result)
        assert result["numpy_symbols_sha256"] == first["symbols_sha256"], (setting, result)  # torch-free decoder
        # pixels: the synthesis network is float, so another kernel may move a pixel by a level
        assert np.abs(pixels.astype(int) - reference.astype(int)).max() <= 2, setting
        assert np.abs(numpy_pixels.astype(int) - reference.astype(int)).max() <= 2, setting


def test_a_file_decodes_identically_under_other_blas_kernels_threads_and_torch_kernels(tmp_path: Path) -> None:
    """Fast: encoder Prescott/1 thread/torch default, decoders SkylakeX/2/avx2 and Haswell/1/default."""
    _cross(("Prescott", 1, "default"), [("SkylakeX", 2, "avx2"), ("Haswell", 1, "default")], tmp_path)


@pytest.mark.slow
def test_files_decode_identically_across_the_whole_matrix(tmp_path: Path) -> None:
    """Encoders Prescott/1/default and SkylakeX/2/avx2; decoders every kernel x thread count x torch capability."""
    decoders = list(itertools.product(("Prescott", "Haswell", "SkylakeX"), (1, 2), ("default", "avx2")))
    for index, encoder in enumerate([("Prescott", 1, "default"), ("SkylakeX", 2, "avx2")]):
        folder = tmp_path / str(index)
        folder.mkdir()
        _cross(encoder, decoders, folder, quality=5, size=(128, 192))
