"""Decoding without torch (issue: files that decode on any machine, without PyTorch).

The numpy synthesis computes the torch decoder's function for every decoder shape (kernel 5, 3, 2,
with and without batch norm); a whole file decodes to the same symbols and low-pass offsets with
both engines, and to pixels at most one level apart; ``imgcomp.decompress`` and ``imgcomp decode``
of a stream version 2 file never import torch; files that need torch say so.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from imgcomp import api, container
from imgcomp.entropy import SymbolDecoder
from imgcomp.errors import ImgcompError
from imgcomp.io import load_image
from imgcomp.postfilter.lowpass import BLOCK_SIZES, LowpassSettings, apply_offsets, apply_offsets_numpy
from imgcomp.systems.mentzer2018 import stream
from imgcomp.systems.mentzer2018.config import preset
from imgcomp.systems.mentzer2018.decoder_numpy import NumpyModel
from imgcomp.systems.mentzer2018.model import ConditionalProbabilityCodec
from imgcomp.systems.mentzer2018.symbols import integer_coder, pull_symbols
from imgcomp.systems.mentzer2018.synthesis_numpy import NumpySynthesis, to_pixels
from imgcomp.zoo import DEFAULT_MODEL, get_model, get_torch_free_model, model_folder
from fresh_process import cli_decode, decompress_output

ROOT = Path(__file__).parents[1]
DEMO = ROOT / "src" / "imgcomp" / "assets" / "demo.png"


def _random_codec(config) -> ConditionalProbabilityCodec:
    torch.manual_seed(3)
    model = ConditionalProbabilityCodec(config)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):  # non-trivial statistics, so folding them is tested
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)
    return model.eval()


@pytest.mark.parametrize("overrides", [
    {}, {"decoder_kernel": 3}, {"decoder_kernel": 2}, {"batch_norm": False}, {"residual_groups": 2, "blocks_per_group": 2},
], ids=["k5", "k3", "k2", "no-bn", "2x2-blocks"])
def test_numpy_synthesis_computes_the_torch_decoder(overrides) -> None:
    config = preset("tiny", **overrides)
    model = _random_codec(config)
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    z = torch.randn(1, config.latent_channels, 5, 7)
    with torch.no_grad():
        expected = model.decode_latent(z)[0].permute(1, 2, 0).numpy()
    got = NumpySynthesis(state, config)(z[0].numpy())
    assert got.shape == expected.shape == (40, 56, 3)
    assert np.abs(got - expected).max() < 1e-3  # float32 in another order, on the 0-255 scale


def test_shipped_model_synthesis_agrees_with_torch_to_a_rounding_step() -> None:
    loaded = get_model(None)
    light = get_torch_free_model(model_folder(DEFAULT_MODEL))
    symbols = torch.randint(0, loaded.config.num_centers, (loaded.config.latent_channels, 16, 24))
    with torch.no_grad():
        expected = stream.reconstruct(loaded.model, symbols, 128, 190)
    got = to_pixels(light.synthesis(light.symbol_values(symbols.numpy())), 128, 190)
    difference = np.abs(got.astype(int) - expected)
    assert difference.max() <= 1 and (difference > 0).mean() < 1e-3


def test_numpy_low_pass_upsampling_matches_torch_to_a_rounding_step() -> None:
    rng = np.random.default_rng(0)
    differing = total = 0
    for trial in range(9):
        settings = LowpassSettings(BLOCK_SIZES[trial % 3], int(rng.integers(1, 9)))
        height, width = (int(v) for v in rng.integers(20, 300, 2))
        offsets = rng.integers(-8, 9, (3, -(-height // settings.block), -(-width // settings.block)))
        decoded = rng.integers(0, 256, (height, width, 3)).astype(np.uint8)
        difference = np.abs(apply_offsets(decoded, offsets, settings).astype(int) - apply_offsets_numpy(decoded, offsets, settings))
        assert difference.max() <= 1
        differing, total = differing + int((difference > 0).sum()), total + difference.size
    assert differing / total < 1e-4


@pytest.fixture(scope="module")
def demo_file() -> bytes:
    pixels = np.ascontiguousarray(load_image(DEMO)[100:228, 200:390])
    return api.encode_image(pixels, 4, lowpass=LowpassSettings(16, 2)).data


def test_both_engines_decode_the_same_symbols_and_nearly_the_same_pixels(demo_file: bytes) -> None:
    header, sections = container.unpack(demo_file)
    assert header.stream_version == 2
    loaded = get_model(None)
    light = api._torch_free_model_for(header, None)
    assert isinstance(light, NumpyModel)
    payload = sections[container.SECTION_SYSTEM]
    torch_symbols = stream.decode_symbols(loaded, SymbolDecoder(payload), header.height, header.width, 2).numpy()
    numpy_symbols = pull_symbols(
        SymbolDecoder(payload), light.config.latent_channels, header.height, header.width, light.masked_out_symbol(),
        lambda shape: integer_coder(light, shape))
    np.testing.assert_array_equal(numpy_symbols, torch_symbols)
    by_numpy = api.decode_image(demo_file, engine="numpy")
    by_torch = api.decode_image(demo_file, engine="torch")
    assert by_numpy.shape == by_torch.shape == (128, 190, 3)
    assert np.abs(by_numpy.astype(int) - by_torch).max() <= 1
    np.testing.assert_array_equal(api.decode_image(demo_file), by_numpy)  # "auto" is numpy here


def test_a_model_folder_decodes_without_torch_and_is_checked(demo_file: bytes, tmp_path: Path) -> None:
    folder = model_folder(DEFAULT_MODEL)
    np.testing.assert_array_equal(api.decode_image(demo_file, model=str(folder), engine="numpy"),
                                  api.decode_image(demo_file, engine="numpy"))
    with pytest.raises(ImgcompError, match="different model"):
        api.decode_image(demo_file, model="mentzer2018/cpu", engine="numpy")


def test_engines_that_cannot_decode_a_file_say_so(demo_file: bytes) -> None:
    old = api.encode_image(np.zeros((16, 16, 3), np.uint8), 1, lowpass=None, stream_version=1).data
    with pytest.raises(ImgcompError, match="without torch"):
        api.decode_image(old, engine="numpy")
    assert api.decode_image(old).shape == (16, 16, 3)  # auto falls back to torch
    with pytest.raises(ImgcompError, match="engine must be one of"):
        api.decode_image(demo_file, engine="onnx")


def test_decompress_and_the_cli_never_import_torch_for_a_stream_version_2_file(demo_file: bytes, tmp_path: Path) -> None:
    path = tmp_path / "x.icz"
    path.write_bytes(demo_file)
    assert decompress_output(path) == ["(190,", "128)", "False"]
    out = cli_decode(path, tmp_path / "x.png")
    assert out.returncode == 0, out.stderr
    assert "TORCH False" in out.stderr
    assert json.loads(out.stdout)["width"] == 190
    np.testing.assert_array_equal(load_image(tmp_path / "x.png"), api.decode_image(demo_file))
