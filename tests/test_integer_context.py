"""The integer-exact context model P (imgcomp.systems.mentzer2018.integer_context): exact arithmetic, round trips,
identical bytes under other BLAS kernels and thread counts, valid frequencies."""

from __future__ import annotations

import decimal
import hashlib
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from imgcomp.entropy.range_coder import SymbolDecoder, SymbolEncoder
from imgcomp.systems.mentzer2018.integer_context import (
    TOTAL, IntegerWavefrontContextModel, exp_table, frequencies, load, reference_logits, save,
)
from imgcomp.systems.mentzer2018.integer_context.convert import integer_context_from_float
from imgcomp.systems.mentzer2018.integer_context.crosscheck import CORETYPES, THREADS, run_child
from imgcomp.systems.mentzer2018.integer_context.model import EXACT_LIMIT, FLOAT32_LIMIT, accumulator_bound, params_sha256
from imgcomp.systems.mentzer2018.context_model import ContextModel3D

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _float_model(features: int, seed: int = 0, symbols: int = 6) -> tuple[ContextModel3D, torch.Tensor]:
    torch.manual_seed(seed)
    model = ContextModel3D(symbols, channels=24, in_channels=features)
    with torch.no_grad():  # larger-than-init weights so the logits spread like a trained P's
        for layer in model.layers():
            layer.weight.mul_(3.0)
            layer.bias.normal_(0, 0.3)
    centres = torch.linspace(-1.7, 2.1, symbols)
    inputs = centres[:, None] if features == 1 else torch.stack([centres, (torch.arange(symbols) < symbols - 1).float()], 1)
    return model, inputs


def _volume(shape, symbols=6, seed=1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # skewed like real latents: mostly one symbol
    return rng.choice(symbols, size=shape, p=np.r_[0.55, np.full(symbols - 1, 0.45 / (symbols - 1))]).astype(np.int64)


def _params(features: int = 1, seed: int = 0, **bits):
    model, inputs = _float_model(features, seed)
    vol = torch.from_numpy(_volume((6, 8, 9), seed=seed))
    calibration = [inputs[vol].permute(3, 0, 1, 2)[None]]
    return integer_context_from_float(model, inputs, calibration, **bits), model, inputs


@pytest.fixture(scope="module")
def params1():
    return _params(1)[0]


@pytest.fixture(scope="module")
def params2():
    return _params(2, seed=3)[0]


@pytest.fixture(scope="module")
def params8():
    """8-bit weights and activations: exact in float32 (the fast dtype)."""
    return _params(2, seed=5, weight_bits=8, activation_bits=8)[0]


@pytest.mark.parametrize("which", ["f1-float64", "f2-float64", "f2-float32"])
def test_wavefront_matches_direct_convolution_reference(which, params1, params2, params8):
    params = {"f1-float64": params1, "f2-float64": params2, "f2-float32": params8}[which]
    symbols = _volume((3, 4, 5), seed=7)
    fast = IntegerWavefrontContextModel(params, symbols.shape).logits_raster(symbols)
    assert np.array_equal(fast, reference_logits(params, symbols))


def test_integer_logits_follow_the_float_model():
    params, model, inputs = _params(1)
    symbols = _volume((3, 5, 6), seed=2)
    with torch.no_grad():
        float_logits = model(inputs[torch.from_numpy(symbols)].permute(3, 0, 1, 2)[None])[0].permute(1, 2, 3, 0).numpy()
    integer = reference_logits(params, symbols) / 2.0**params.fraction_bits
    assert np.abs(integer - float_logits).max() < 0.05


def test_float32_and_float64_give_the_same_integers(params8, params1):
    symbols = _volume((4, 6, 7), seed=9)
    f32 = IntegerWavefrontContextModel(params8, symbols.shape)
    f64 = IntegerWavefrontContextModel(params8, symbols.shape, dtype=np.float64)
    assert f32.dtype == np.float32 and f64.dtype == np.float64
    assert np.array_equal(f32.logits_raster(symbols), f64.logits_raster(symbols))
    assert np.array_equal(f32.all_frequencies(symbols), f64.all_frequencies(symbols))
    with pytest.raises(ValueError):
        IntegerWavefrontContextModel(params1, symbols.shape, dtype=np.float32)  # bounds above 2**24


def test_encoder_chunks_and_decoder_steps_give_the_same_frequencies(params1, monkeypatch):
    import imgcomp.systems.mentzer2018.integer_context.wavefront as wavefront

    monkeypatch.setattr(wavefront, "ENCODE_CHUNK", 37)  # many uneven chunks, in threads
    symbols = _volume((5, 7, 9), seed=4)
    model = IntegerWavefrontContextModel(params1, symbols.shape)
    chunked = model.all_frequencies(symbols, threads=3)
    assert np.array_equal(chunked, model.all_frequencies(symbols, by_step=True))
    assert np.array_equal(chunked, model.all_frequencies(symbols, threads=1))


@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 1, 7), (2, 3, 5), (5, 1, 3), (3, 7, 2), (4, 9, 11)])
@pytest.mark.parametrize("which", [1, 2, 8])
def test_round_trip_odd_shapes(shape, which, params1, params2, params8):
    params = {1: params1, 2: params2, 8: params8}[which]
    symbols = _volume(shape, seed=sum(shape))
    encoder = SymbolEncoder()
    bits = IntegerWavefrontContextModel(params, shape).encode(symbols, encoder)
    encoder.push(np.array([3]), np.full((1, 5), 0.2))  # something after it in the same stream
    payload = encoder.finish()
    decoder = SymbolDecoder(payload)
    assert np.array_equal(IntegerWavefrontContextModel(params, shape).decode(decoder), symbols)
    assert int(decoder.pull(np.full((1, 5), 0.2))[0]) == 3
    assert 0 < bits < 8 * len(payload) + 64


def _python_frequencies(row: list[int], table: list[int], bits: int = 16) -> list[int]:
    total, top = 1 << bits, max(row)
    e = [table[min(top - x, len(table) - 1)] for x in row]
    f = [1 + v * (total - len(row)) // sum(e) for v in e]
    f[row.index(top)] += total - sum(f)
    return f


def test_frequencies_are_positive_and_sum_to_the_total(params1):
    table = params1.table
    rng = np.random.default_rng(0)
    extreme = np.array([[0, 0, 0, 0, 0, 0], [10**9, -10**9, 0, 5, 5, 5], [-7, -7, -7, -7, -7, -6],
                        [1, 2**20, 3, 4, 5, 6], [-(2**30), 2**30, -(2**30), 2**30, 0, 1]])
    for logits in (extreme, rng.integers(-5000, 5000, (2000, 6)), rng.integers(-10**6, 10**6, (2000, 6)),
                   rng.integers(-3, 3, (500, 2)), rng.integers(-800, 800, (300, 257)), rng.integers(-40, 40, (2000, 6))):
        f = frequencies(logits, table)
        assert f.dtype == np.int64 and f.min() >= 1 and np.all(f.sum(axis=1) == TOTAL)
        assert np.array_equal(f, frequencies(logits.astype(np.float32), table))  # the fast path's dtypes
        # the float64 normalisation is the integer definition, row by row in Python integers
        for row, got in zip(logits.tolist()[:300], f.tolist()[:300]):
            assert got == _python_frequencies(row, table.tolist())
    # and on a real volume, every row
    symbols = _volume((4, 6, 7))
    f = IntegerWavefrontContextModel(params1, symbols.shape).all_frequencies(symbols)
    assert f.min() >= 1 and np.all(f.sum(axis=1) == TOTAL)


def test_exp_table_is_the_correctly_rounded_exponential():
    table = exp_table(8, 20)
    assert table[0] == 2**20 and table[-1] == 0 and np.all(np.diff(table) <= 0) and np.all(table[:-1] > 0)
    with decimal.localcontext() as ctx:
        ctx.prec = 60
        for d in (1, 100, 1000, len(table) - 2, len(table) - 1):
            exact = decimal.Decimal(2**20) * (-decimal.Decimal(d) / 256).exp()
            assert table[d] == int(exact.to_integral_value(rounding=decimal.ROUND_HALF_EVEN))
    # pinned: the whole table, so a change to it (which changes every file's bytes) is noticed
    assert table.tolist()[:4] == [1048576, 1044488, 1040416, 1036360] and len(table) == 3728
    assert hashlib.sha256(table.astype("<i8").tobytes()).hexdigest() == (
        "cc86375794217bd8f7837b52daeb84bad38bb39f847d0ec2804e44caf045ce90")


def test_exactness_bounds(params1, params2, params8):
    for params in (params1, params2, params8):
        in_max = int(np.abs(params.inputs).max())
        for layer in params.layers:
            bound = accumulator_bound(layer, in_max)
            assert bound < (FLOAT32_LIMIT if params.compute_dtype() == np.float32 else EXACT_LIMIT)
            # brute force on the worst input of each column: the bound is attained, not exceeded
            worst = np.sign(layer.weight) * in_max
            assert np.abs((worst * layer.weight).sum(0) + layer.bias).max() + layer.rounding.max() <= bound
            in_max = max(abs(layer.low), abs(layer.high))
    assert params1.compute_dtype() == np.float64 and params8.compute_dtype() == np.float32
    with pytest.raises(ValueError, match="2\\*\\*"):  # far too wide for exact float64: refused
        _params(1, weight_bits=20, activation_bits=30)


def test_save_load_round_trip(params2, tmp_path):
    save(params2, tmp_path / "p.safetensors")
    loaded = load(tmp_path / "p.safetensors")
    symbols = _volume((3, 4, 4))
    a = IntegerWavefrontContextModel(params2, symbols.shape).all_frequencies(symbols)
    b = IntegerWavefrontContextModel(loaded, symbols.shape).all_frequencies(symbols)
    assert np.array_equal(a, b)
    for x, y in zip(params2.layers, loaded.layers):
        assert np.array_equal(x.weight, y.weight) and x.weight.dtype == y.weight.dtype == np.int64
    assert params_sha256(loaded) == params_sha256(params2) != params_sha256(_params(2, seed=4)[0])


def test_the_decoder_modules_do_not_import_torch():
    code = ("import sys, imgcomp.systems.mentzer2018.integer_context, imgcomp.systems.mentzer2018.integer_context.crosscheck; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": SRC})


@pytest.mark.parametrize("which", ["float64", "float32"])
def test_other_blas_kernels_and_thread_counts_decode_identically(which, params2, params8, tmp_path):
    """Encode here; decode and re-encode in fresh processes under each OPENBLAS_CORETYPE and
    1 or 2 threads: the same symbols and the same payload bytes everywhere."""
    params2 = params2 if which == "float64" else params8
    assert np.dtype(params2.compute_dtype()).name == which
    symbols = _volume((7, 12, 13), seed=11)
    save(params2, tmp_path / "params.safetensors")
    np.save(tmp_path / "symbols.npy", symbols)
    encoder = SymbolEncoder()
    IntegerWavefrontContextModel(params2, symbols.shape).encode(symbols, encoder)
    payload = encoder.finish()
    (tmp_path / "payload.bin").write_bytes(payload)
    settings = [(c, t) for c in CORETYPES for t in THREADS]
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda s: run_child("int", tmp_path, *s, timeout=120), settings))
    for setting, result in zip(settings, results):
        assert result["symbols_equal"], (setting, result)
        assert result["payload_equal"], (setting, result)
        assert not result["torch_imported"]
    assert len({r["payload_sha256"] for r in results}) == 1


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_decoding_threads_split_steps_without_changing_a_symbol(threads, params2, monkeypatch):
    """Each step's rows may be shared among threads (rows of one step are independent): the same
    symbols for any split, small steps included (the split threshold lowered to 1 row)."""
    from imgcomp.systems.mentzer2018.integer_context import wavefront

    monkeypatch.setattr(wavefront, "SPLIT_MIN_ROWS", 1)
    shape = (3, 9, 13)
    symbols = _volume(shape, seed=5)
    encoder = SymbolEncoder()
    IntegerWavefrontContextModel(params2, shape).encode(symbols, encoder)
    payload = encoder.finish()
    decoded = IntegerWavefrontContextModel(params2, shape).decode(SymbolDecoder(payload), threads=threads)
    assert np.array_equal(decoded, symbols)


def test_shipped_model_converts_exactly_in_float32_and_costs_under_one_percent():
    """The default shipped model on a real latent (a crop of demo.png, qualities 1, 3, 5): the
    shipping configuration runs in float32, round-trips, and codes within 1% of the float P."""
    from imgcomp.systems.mentzer2018.wavefront import WavefrontContextModel
    from imgcomp.systems.mentzer2018.integer_context.convert import integer_context_from_codec
    from imgcomp.systems.mentzer2018.integer_context.measure import DEMO, symbol_volume
    from imgcomp.io import load_image
    from imgcomp.zoo import get_model

    codec = get_model().model
    pixels = np.ascontiguousarray(load_image(DEMO)[128:256, 256:448])
    volumes = [symbol_volume(codec, pixels, q) for q in (1, 3, 5)]
    params = integer_context_from_codec(codec, volumes)
    assert params.compute_dtype() == np.float32
    float_bits = int_bits = 0.0
    for symbols in volumes:
        shape = tuple(symbols.shape)
        float_bits += WavefrontContextModel(codec.context_model, codec.symbol_inputs(), shape).encode(symbols, SymbolEncoder())
        encoder = SymbolEncoder()
        int_bits += IntegerWavefrontContextModel(params, shape).encode(symbols.numpy(), encoder)
        decoded = IntegerWavefrontContextModel(params, shape).decode(SymbolDecoder(encoder.finish()))
        assert np.array_equal(decoded, symbols.numpy())
    assert int_bits < 1.01 * float_bits
