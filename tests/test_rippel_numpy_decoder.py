"""Decoding rippel2017 files without torch (numpy synthesis of the pyramid decoder).

The numpy decoder computes the torch decoder's function for every decoder shape the config allows
(latent at any pyramid level, so branches that are transposed, 3x3 or strided convolutions of
kernel = stride = 2^k; levels without a branch; the decoder's own extractor depths); a whole file
decodes to the same symbols with both engines and to pixels at most one level apart;
``imgcomp.decompress`` and ``imgcomp decode`` of a rippel2017 file never import torch.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from imgcomp import api, container
from imgcomp.errors import ImgcompError
from imgcomp.io import load_image
from imgcomp.models import export_model
from imgcomp.numpy_conv import to_pixels
from imgcomp.systems.rippel2017 import stream
from imgcomp.systems.rippel2017.config import preset
from imgcomp.systems.rippel2017.decoder_numpy import NumpyModel
from imgcomp.systems.rippel2017.model import RippelCodec
from imgcomp.systems.rippel2017.symbols import pull_symbols
from imgcomp.systems.rippel2017.synthesis_numpy import NumpySynthesis
from imgcomp.zoo import get_model, get_torch_free_model
from fresh_process import cli_decode, decompress_output
from synthetic_images import smooth_image

ROOT = Path(__file__).parents[1]
DEMO = ROOT / "src" / "imgcomp" / "assets" / "demo.png"
SHIPPED = "rippel2017/cpu-lp"


def _random_codec(config) -> RippelCodec:
    torch.manual_seed(5)
    model = RippelCodec(config).eval()
    with torch.no_grad():
        model.log2_step.uniform_(-1.0, 2.5)  # per-channel steps, some clamped at 1
    return model


CONFIGS = {
    "tiny": {},  # latent at level 4 of 6: transposed branches of kernel 16, 8, 4, 2, a 3x3 one, a strided one
    "latent-at-2": {"target_scale": 2, "input_mean": [90.0, 130.0, 110.0], "input_std": [50.0, 70.0, 40.0]},
    "no-fine-branches": {"decoder_first_branch": 2, "decoder_extractor_layers": [1, 2, 0, 1, 2, 0]},
    "latent-at-0": {"scales": 3, "scale_channels": [4, 6, 8], "extractor_layers": [1, 0, 2], "target_scale": 0},
    "latent-at-top": {"target_scale": 5, "align_layers": 2, "decoder_first_branch": 1},
}


@pytest.mark.parametrize("overrides", list(CONFIGS.values()), ids=list(CONFIGS))
def test_numpy_synthesis_computes_the_torch_decoder(overrides: dict) -> None:
    config = preset("tiny", **overrides)
    model = _random_codec(config)
    synthesis = NumpySynthesis({k: v.numpy() for k, v in model.state_dict().items()}, config)
    unit = 2 ** (config.scales - 1 - config.target_scale)  # the coarsest level has whole pixels
    symbols = torch.randint(-24, 25, (1, config.latent_channels, 3 * unit, 5 * unit))
    for quality in range(config.qualities):
        np.testing.assert_allclose(synthesis.step(quality), model.step(quality).view(-1).detach().numpy(), rtol=1e-6)
        with torch.no_grad():
            expected = model.decode_features(model.dequantise(symbols, quality))[0].permute(1, 2, 0).numpy()
        got = synthesis(symbols[0].numpy(), quality)
        assert got.shape == expected.shape == (3 * unit * config.latent_stride, 5 * unit * config.latent_stride, 3)
        assert expected.std() > 1.0  # a varied image: a wrong layer would show far above the bound
        assert np.abs(got - expected).max() < 1e-3  # float32 in another order, 0-255 scale; measured <= 1.6e-5


def test_shipped_model_synthesis_agrees_with_torch_to_a_rounding_step() -> None:
    loaded = get_model(SHIPPED)
    light = get_torch_free_model(SHIPPED)
    assert isinstance(light, NumpyModel)
    np.testing.assert_array_equal(light.table.f0, loaded.model.context_table.numpy())
    rng = np.random.default_rng(0)
    differences = []
    for quality in range(1, loaded.config.qualities + 1):
        symbols = rng.integers(-6, 7, (loaded.config.latent_channels, 8, 12))
        by_torch = stream.reconstruct(loaded.model, symbols, quality, 120, 190)
        differences.append(to_pixels(light.synthesis(symbols, quality - 1), 120, 190).astype(int) - by_torch)
    difference = np.abs(np.stack(differences))
    assert difference.max() <= 1 and (difference > 0).mean() < 1e-3  # measured: 1 level on 4 of 342,000


def _crop() -> np.ndarray:
    return np.ascontiguousarray(load_image(DEMO)[96:224, 200:390])


@pytest.fixture(scope="module")
def rippel_file() -> bytes:
    return api.encode_image(_crop(), 3, model=SHIPPED).data


def test_both_engines_decode_the_same_symbols_and_nearly_the_same_pixels(rippel_file: bytes) -> None:
    header, sections = container.unpack(rippel_file)
    loaded = get_model(SHIPPED)
    light = api._torch_free_model_for(header, None)
    assert isinstance(light, NumpyModel)
    coded = stream.image_symbols(loaded.model, _crop(), 3)
    decoded = pull_symbols(light.config, light.table, sections[container.SECTION_SYSTEM], header.width, header.height, 3)
    np.testing.assert_array_equal(decoded, coded)
    by_numpy = api.decode_image(rippel_file, engine="numpy")
    by_torch = api.decode_image(rippel_file, engine="torch")
    assert by_numpy.shape == by_torch.shape == (128, 190, 3)
    difference = np.abs(by_numpy.astype(int) - by_torch)
    assert difference.max() <= 1 and (difference > 0).mean() < 1e-3
    np.testing.assert_array_equal(api.decode_image(rippel_file), by_numpy)  # "auto" is numpy


def test_a_model_folder_decodes_without_torch_and_is_checked(tmp_path: Path) -> None:
    model = _random_codec(preset("tiny"))
    stream.count_table_on(model, smooth_image(96, 128, seed=4), (1, 2))
    folder = export_model(model, tmp_path / "model")
    pixels = smooth_image(70, 100, seed=5)  # not a multiple of the padding
    result = api.encode_image(pixels, quality=2, model=folder, keep_reconstruction=True, lowpass=None)
    by_numpy = api.decode_image(result.data, model=str(folder), engine="numpy")
    assert np.abs(by_numpy.astype(int) - result.reconstruction).max() <= 1
    np.testing.assert_array_equal(api.decode_image(result.data, model=str(folder)), by_numpy)
    with pytest.raises(ImgcompError, match="different model"):
        api.decode_image(result.data, model=SHIPPED, engine="numpy")
    light = get_torch_free_model(folder)
    for garbage in (bytes(range(12)), b"\xff" * 40, result.data[::-1]):  # an image or a clear error
        try:
            assert light.system.decode(light, garbage, 100, 70, 2, 1).pixels.shape == pixels.shape
        except ImgcompError as exc:
            assert "corrupt" in str(exc)
    with pytest.raises(ImgcompError, match="stream version 7"):
        light.system.decode(light, result.data, 100, 70, 2, 7)
    document = json.loads((folder / "config.json").read_text())
    for field, value in (("align_channels", 16), ("decoder_first_branch", 1), ("latent_channels", 8)):
        broken = tmp_path / field
        broken.mkdir()
        (broken / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
        (broken / "config.json").write_text(json.dumps({**document, "config": {**document["config"], field: value}}))
        with pytest.raises(ImgcompError, match="config needs|weights lack"):
            get_torch_free_model(broken)


def test_decompress_and_the_cli_never_import_torch_for_a_rippel2017_file(rippel_file: bytes, tmp_path: Path) -> None:
    path = tmp_path / "x.icz"
    path.write_bytes(rippel_file)
    assert decompress_output(path) == ["(190,", "128)", "False"]
    for options, torch_loaded in (((), False), (("--engine", "torch"), True)):
        out = cli_decode(path, tmp_path / f"x{len(options)}.png", *options)
        assert out.returncode == 0, out.stderr
        assert f"TORCH {torch_loaded}" in out.stderr
        assert json.loads(out.stdout)["width"] == 190
    np.testing.assert_array_equal(load_image(tmp_path / "x0.png"), api.decode_image(rippel_file))
    np.testing.assert_array_equal(load_image(tmp_path / "x2.png"), api.decode_image(rippel_file, engine="torch"))
