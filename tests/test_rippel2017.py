"""Rippel & Bourdev 2017: quantisation, bitplanes, exact context coding, ACR, streams, training."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from imgcomp.api import decode_image, encode_image
from imgcomp.entropy import SymbolDecoder, SymbolEncoder
from imgcomp.errors import ImgcompError
from imgcomp.models import export_model, load_model
from imgcomp.systems import get_system, system_for_id
from imgcomp.systems.rippel2017 import bit_context, stream
from imgcomp.systems.rippel2017.acr import AcrController, codelength_penalty
from imgcomp.systems.rippel2017.bitplanes import (
    from_bitplanes, from_offset_bitplanes, quantise, to_bitplanes, to_offset_bitplanes,
)
from imgcomp.systems.rippel2017.config import preset
from imgcomp.systems.rippel2017.model import RippelCodec
from synthetic_images import smooth_image


def correlated_symbols(shape: tuple[int, int, int], seed: int = 0, limit: int = 32) -> np.ndarray:
    """Integers in [-limit, limit] whose scale varies by 8x8 region, shared by all channels (like
    latents: flat regions near 0, textured ones large)."""
    rng = np.random.default_rng(seed)
    c, h, w = shape
    scale = rng.choice([0.05, 0.5, 3.0, 8.0], size=(1, -(-h // 8), -(-w // 8)))
    scale = np.repeat(np.repeat(scale, 8, axis=1), 8, axis=2)[:, :h, :w] * np.linspace(0.5, 1.5, c)[:, None, None]
    return np.clip(np.rint(rng.laplace(scale=scale)), -limit, limit).astype(np.int64)


def memoryless_bits(symbols: np.ndarray) -> float:
    """What an ideal coder with one symbol distribution per channel (fitted on the image itself) spends."""
    total = 0.0
    for channel in symbols:
        _, counts = np.unique(channel, return_counts=True)
        total -= float((counts * np.log2(counts / counts.sum())).sum())
    return total


# ----------------------------------------------------------------------------- 3.2.1-3.2.2

def test_bitplanes_are_exactly_invertible() -> None:
    rng = np.random.default_rng(1)
    q = rng.integers(-32, 33, size=(5, 7, 9))
    magnitude, sign = to_bitplanes(q, 6)
    assert magnitude.shape == (6, 5, 7, 9) and set(np.unique(magnitude)) <= {0, 1}
    assert np.array_equal(from_bitplanes(magnitude, sign), q)
    assert np.array_equal(magnitude[0], (np.abs(q) >= 32).astype(np.uint8))  # most significant first
    offset = to_offset_bitplanes(q, 7, 32)
    assert np.array_equal(from_offset_bitplanes(offset, 32), q)
    with pytest.raises(ValueError):
        to_bitplanes(np.array([64]), 6)
    with pytest.raises(ValueError):
        to_offset_bitplanes(np.array([-33]), 7, 32)


def test_quantisation_rounds_with_a_straight_through_gradient() -> None:
    y = torch.tensor([-1.0, -0.51, 0.0, 0.2, 0.999], requires_grad=True)
    step = torch.tensor(2.0**-5)
    q, y_hat = quantise(y, step)
    assert q.tolist() == [-32, -16, 0, 6, 32]
    assert torch.allclose(y_hat, q * step)
    q.sum().backward()
    assert torch.allclose(y.grad, torch.full_like(y, 32.0))


def test_pyramid_shapes_range_and_every_level_is_trained() -> None:
    torch.manual_seed(0)
    config = preset("tiny")
    model = RippelCodec(config)
    x = torch.rand(2, 3, 64, 96) * 255
    features = model.encode_features(x)
    assert features.shape == (2, config.latent_channels, 64 // 16, 96 // 16)
    assert features.abs().max() <= 1.0
    out = model(x, 1)
    assert out["x_hat"].shape == x.shape
    (out["x_hat"].mean() + out["q"].abs().mean()).backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing
    symbols = model.symbols(x, 0)
    assert symbols.dtype == torch.int64 and symbols.abs().max() <= 2 ** (config.bits - 1)


def test_decoder_without_fine_branches_and_its_own_depths() -> None:
    """``decoder_first_branch``: levels below it are reached through the upsamplers only;
    ``decoder_extractor_layers``: the decoder's depths, independent of the encoder's."""
    torch.manual_seed(0)
    config = preset("tiny", decoder_first_branch=2, decoder_extractor_layers=[1, 2, 0, 1, 1, 1])
    model = RippelCodec(config)
    assert len(model.decoder.branch) == config.scales - 2
    assert [len(stack) for stack in model.decoder.extract] == [1, 2, 0, 1, 1, 1]
    assert [len(stack) for stack in model.encoder.extract] == config.extractor_layers
    x = torch.rand(1, 3, 64, 64) * 255
    out = model(x, 0)
    assert out["x_hat"].shape == x.shape
    out["x_hat"].mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.decoder.parameters())
    with pytest.raises(ImgcompError, match="decoder_first_branch"):
        preset("tiny", decoder_first_branch=6)
    with pytest.raises(ImgcompError, match="decoder_extractor_layers"):
        preset("tiny", decoder_extractor_layers=[1, 1])


# ----------------------------------------------------------------------------- 3.2.3

def test_context_coding_round_trip_and_payload_matches_the_estimate() -> None:
    config = preset("tiny", latent_channels=8, channel_groups=4, qualities=2)
    training = np.stack([correlated_symbols((8, 48, 64), seed) for seed in range(4)])
    table = bit_context.table_from_counts(config, bit_context.count(config, training, 1)).astype(np.int64)
    symbols = correlated_symbols((8, 48, 64), seed=9)
    encoder = SymbolEncoder()
    estimate = bit_context.encode(config, table, symbols, 1, encoder)
    payload = encoder.finish()
    decoded = bit_context.decode(config, table, symbols.shape, 1, SymbolDecoder(payload))
    assert np.array_equal(decoded, symbols)
    assert abs(8 * len(payload) - estimate) <= 0.01 * estimate + 32  # within 1% (+ the coder's last word)
    assert estimate == pytest.approx(bit_context.symbols_bits(config, table, symbols[None], 1))
    # the contexts see the regions: fewer bits than the image's own per-channel entropy
    assert estimate < 0.95 * memoryless_bits(symbols)  # measured: 0.91
    uniform = np.full_like(table, bit_context.HALF)  # any table decodes exactly
    encoder = SymbolEncoder()
    bit_context.encode(config, uniform, symbols, 0, encoder)
    assert np.array_equal(bit_context.decode(config, uniform, symbols.shape, 0, SymbolDecoder(encoder.finish())), symbols)


def test_table_from_counts_is_smoothed_and_in_range() -> None:
    config = preset("tiny")
    counts = np.zeros((bit_context.table_size(config), 2))
    counts[0] = [1000, 0]
    counts[1] = [0, 1000]
    table = bit_context.table_from_counts(config, counts)
    assert table.dtype == np.int32 and table.min() >= 1 and table.max() <= bit_context.TOTAL - 1
    assert table[0] > 0.99 * bit_context.TOTAL and table[1] < 0.01 * bit_context.TOTAL
    assert table[2] == pytest.approx(bit_context.HALF, rel=0.01)  # an unseen context takes its plane/channel's rate


# ----------------------------------------------------------------------------- 3.2.4

def test_codelength_penalty_values() -> None:
    assert float(codelength_penalty(torch.zeros(1, 2, 3, 3))) == 0.0
    q = torch.zeros(1, 1, 3, 3)
    q[0, 0, 1, 1] = 3.0  # log2(1 + 3) = 2 for itself and for each of its 8 differences that exist
    # differences involving the centre: for each shift, the centre vs its neighbour and the
    # neighbour on the other side vs the centre: 2 per shift, 4 shifts
    expected = (2.0 + 8 * 2.0) / 9
    assert float(codelength_penalty(q)) == pytest.approx(expected)


def test_acr_controller_converges_on_a_toy_problem() -> None:
    rng = np.random.default_rng(0)
    target = 0.3
    controller = AcrController(target, gain=0.2)
    alpha = 1e-3
    measured_tail = []
    for step in range(400):
        measured = 1.2 / (1.0 + 50.0 * alpha) * (1.0 + 0.05 * rng.normal())  # the rate falls as alpha grows
        alpha = controller.update(alpha, measured)
        if step >= 300:
            measured_tail.append(measured)
    assert np.mean(measured_tail) == pytest.approx(target, rel=0.05)
    assert controller.update(alpha, float("nan")) == alpha


# ----------------------------------------------------------------------------- streams

@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> Path:
    torch.manual_seed(3)
    model = RippelCodec(preset("tiny")).eval()
    pixels = smooth_image(96, 128, seed=4)
    stream.count_table_on(model, pixels, (1, 2))
    return export_model(model, tmp_path_factory.mktemp("rippel") / "model")


def test_registered_and_found_by_id() -> None:
    system = get_system("rippel2017")
    assert system_for_id(3) is system and system.stream_version in system.readable_stream_versions


def test_api_round_trip_through_a_file(tiny_model_dir: Path) -> None:
    pixels = smooth_image(70, 100, seed=5)  # not a multiple of the padding
    for lowpass in (None, "auto"):
        result = encode_image(pixels, quality=2, model=tiny_model_dir, keep_reconstruction=True, lowpass=lowpass)
        decoded = decode_image(result.data, model=tiny_model_dir, engine="torch")  # numpy: test_rippel_numpy_decoder
        assert decoded.shape == pixels.shape and np.array_equal(decoded, result.reconstruction)
    low = encode_image(pixels, quality=1, model=tiny_model_dir, lowpass=None)
    assert low.payload_bytes <= result.payload_bytes
    loaded = load_model(tiny_model_dir)
    with pytest.raises(ImgcompError, match="stream version 7"):
        get_system("rippel2017").decode(loaded, b"\0" * 8, 100, 70, 1, 7)
    for garbage in (bytes(range(12)), b"\xff" * 40, result.data[::-1]):  # an image or a clear error, never a traceback
        try:
            assert get_system("rippel2017").decode(loaded, garbage, 100, 70, 2, 1).pixels.shape == pixels.shape
        except ImgcompError as exc:
            assert "corrupt" in str(exc)
    with pytest.raises(ImgcompError, match="corrupt"):
        get_system("rippel2017").decode(loaded, b"\0" * 7, 100, 70, 2, 1)
    with pytest.raises(ImgcompError, match="refine"):
        encode_image(pixels, quality=1, model=tiny_model_dir, refine_steps=2)


def test_bit_exact_across_thread_counts(tiny_model_dir: Path) -> None:
    pixels = smooth_image(128, 160, seed=6)
    previous = torch.get_num_threads()
    outputs = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            loaded = load_model(tiny_model_dir)
            data = encode_image(pixels, quality=2, model=loaded, lowpass=None).data
            outputs.append((data, decode_image(data, model=loaded)))
    finally:
        torch.set_num_threads(previous)
    assert outputs[0][0] == outputs[1][0]
    assert np.array_equal(outputs[0][1], outputs[1][1])


def test_bit_exact_across_processes(tiny_model_dir: Path, tmp_path: Path) -> None:
    """A file encoded in another process (one torch thread, fresh interpreter) has the bytes of one
    encoded here, and each process decodes the other's file to the same pixels."""
    import subprocess
    import sys

    pixels = smooth_image(96, 160, seed=8, noise=6.0)
    np.save(tmp_path / "pixels.npy", pixels)
    code = (
        "import sys, numpy as np, torch; torch.set_num_threads(1)\n"
        "from imgcomp.api import encode_image, decode_image\n"
        "pixels = np.load(sys.argv[1]); data = encode_image(pixels, quality=2, model=sys.argv[2]).data\n"
        "open(sys.argv[3], 'wb').write(data)\n"
        "np.save(sys.argv[4], decode_image(open(sys.argv[5], 'rb').read(), model=sys.argv[2]))\n"
    )
    here = encode_image(pixels, quality=2, model=tiny_model_dir)
    (tmp_path / "here.icz").write_bytes(here.data)
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "pixels.npy"), str(tiny_model_dir), str(tmp_path / "there.icz"),
         str(tmp_path / "decoded_there.npy"), str(tmp_path / "here.icz")],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "there.icz").read_bytes() == here.data
    decoded_here = decode_image(here.data, model=tiny_model_dir)
    assert np.array_equal(np.load(tmp_path / "decoded_there.npy"), decoded_here)


def test_payload_within_one_percent_of_the_estimate_on_a_real_sized_image(tiny_model_dir: Path) -> None:
    loaded = load_model(tiny_model_dir)
    pixels = smooth_image(384, 512, seed=7, noise=12.0)
    encoded = get_system("rippel2017").encode(loaded, pixels, 2)
    assert abs(8 * len(encoded.payload) - encoded.estimated_bits) <= 0.01 * encoded.estimated_bits + 32
    decoded = get_system("rippel2017").decode(loaded, encoded.payload, 512, 384, 2, 1)
    assert np.array_equal(decoded.pixels, encoded.reconstruct())


# ----------------------------------------------------------------------------- training

def test_training_smoke_with_the_tiny_preset(tmp_path: Path) -> None:
    from imgcomp.systems.rippel2017.recipes import RECIPES, build_config
    from imgcomp.systems.rippel2017.training import train

    data = tmp_path / "data"
    data.mkdir()
    for seed in range(3):
        Image.fromarray(smooth_image(80, 96, seed=seed, noise=8.0)).save(data / f"{seed}.png")
    assert "cpu" in RECIPES
    config = build_config(None, {
        "data": str(data), "val_data": str(data), "preset": "tiny", "steps": 6, "batch_size": 2, "crop": 64,
        "target_bpp": [0.2, 0.6], "acr_warmup": 2, "val_every": 6, "log_every": 2, "checkpoint_every": 6,
    })
    result = train(config, tmp_path / "run")
    assert result["step"] == 6 and math.isfinite(result["loss"])
    assert "val_bpp_q2" in result and 0.0 < result["val_ms_ssim_q2"] <= 1.0
    loaded = load_model(tmp_path / "run" / "model")
    assert loaded.model.context_counts.sum() > 0 and loaded.model.acr_alpha.tolist() != [0.01, 0.01]
    pixels = smooth_image(64, 64, seed=1)
    data_bytes = encode_image(pixels, quality=2, model=loaded, lowpass=None).data
    assert decode_image(data_bytes, model=loaded).shape == pixels.shape
    with pytest.raises(ImgcompError, match="increasing"):
        build_config(None, {"data": str(data), "target_bpp": [0.5, 0.2]})
    scaled = build_config("cpu", {"data": str(data), "target_bpp": 1.6}).target_bpp
    assert scaled == pytest.approx([0.2, 0.4, 0.7, 1.1, 1.6])


def test_resume_continues_exactly(tmp_path: Path) -> None:
    """Counts, table and alphas are model buffers, so a resumed run ends where an uninterrupted one does."""
    from safetensors.torch import load_file

    from imgcomp.systems.rippel2017.recipes import build_config
    from imgcomp.systems.rippel2017.training import train

    data = tmp_path / "data"
    data.mkdir()
    for seed in range(2):
        Image.fromarray(smooth_image(64, 64, seed=seed, noise=8.0)).save(data / f"{seed}.png")

    def settings(steps: int) -> dict:
        return {
            "data": str(data), "preset": "tiny", "steps": steps, "batch_size": 2, "crop": 32,
            "target_bpp": [0.2, 0.6], "acr_warmup": 1, "lr_decay_at": [], "log_every": 1, "checkpoint_every": 2,
        }

    train(build_config(None, settings(4)), tmp_path / "straight")
    train(build_config(None, settings(2)), tmp_path / "resumed")
    train(build_config(None, settings(4)), tmp_path / "resumed", resume=True)
    straight = load_file(str(tmp_path / "straight" / "model" / "model.safetensors"))
    resumed = load_file(str(tmp_path / "resumed" / "model" / "model.safetensors"))
    assert straight.keys() == resumed.keys()
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    assert float(straight["acr_alpha"][0]) != 0.01 or float(straight["acr_alpha"][1]) != 0.01


# ----------------------------------------------------------------------------- sec. 4: adversarial training

def test_discriminator_averages_one_scalar_per_scale_and_swap_is_a_permutation() -> None:
    from imgcomp.systems.rippel2017.adversarial import MultiscaleDiscriminator, swap_pairs

    torch.manual_seed(0)
    disc = MultiscaleDiscriminator([4, 6, 8])
    a, b = torch.rand(5, 3, 48, 64) * 255, torch.rand(5, 3, 48, 64) * 255
    branches = disc.branch_outputs(a, b)
    assert branches.shape == (5, 3)
    assert torch.allclose(disc(a, b), branches.mean(dim=1))
    assert not torch.allclose(branches[:, 0], branches[:, 1])  # each scale has its own branch
    disc(a, b).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in disc.parameters())  # every branch counts
    first, second, label = swap_pairs(a, b, torch.Generator().manual_seed(1))
    assert set(label.tolist()) == {0.0, 1.0}  # seed 1 swaps some pairs and keeps others
    for i, kept in enumerate(label.tolist()):
        assert torch.equal(first[i], a[i] if kept else b[i]) and torch.equal(second[i], b[i] if kept else a[i])
    again = swap_pairs(a, b, torch.Generator().manual_seed(1))[2]
    assert torch.equal(again, label)


def test_accuracy_gate_trains_d_below_confuses_above_alternates_between() -> None:
    from imgcomp.systems.rippel2017.adversarial import CONFUSE, TRAIN_D, AccuracyGate
    from imgcomp.systems.rippel2017.training import TrainConfig

    defaults = TrainConfig(data="x")
    assert (defaults.adversarial, defaults.d_accuracy_low, defaults.d_accuracy_high) == (False, 0.8, 0.95)
    gate = AccuracyGate(0.8, 0.95, momentum=0.0)
    branches = []
    for batch_accuracy in [0.5, 0.7, 0.99, 0.97, 0.9, 0.9, 0.9, 0.9, 0.2]:
        branches.append(gate.choose())
        gate.update(batch_accuracy)
    assert branches == [TRAIN_D, TRAIN_D, TRAIN_D, CONFUSE, CONFUSE, TRAIN_D, CONFUSE, TRAIN_D, CONFUSE]
    assert gate.choose() == TRAIN_D  # 0.2 < 0.8
    running = AccuracyGate(0.8, 0.95, momentum=0.8)
    assert running.update(1.0) == pytest.approx(0.6) and running.update(1.0) == pytest.approx(0.68)
    restored = AccuracyGate(0.8, 0.95, momentum=0.8)
    restored.load_state_dict(running.state_dict())
    assert restored.accuracy == running.accuracy and restored.branch() == running.branch()


def test_balanced_weight_scales_the_confusion_gradient_to_the_ratio() -> None:
    from imgcomp.systems.rippel2017.adversarial import balanced_weight

    torch.manual_seed(0)
    z = torch.randn(2, 3, 8, 8, requires_grad=True)
    reconstruction = ((z - 1.0) ** 2).mean() * 37.0
    confusion = torch.nn.functional.softplus(-(z * torch.randn_like(z)).sum())
    for ratio in (0.3, 2.0):
        weight = balanced_weight(reconstruction, confusion, z, ratio)
        g_rec, = torch.autograd.grad(reconstruction, z, retain_graph=True)
        g_adv, = torch.autograd.grad(weight * confusion, z, retain_graph=True)
        assert float(g_adv.norm()) == pytest.approx(ratio * float(g_rec.norm()), rel=1e-5)
    assert float(g_adv.norm()) > 1e-3  # not a degenerate toy


def _tiny_gan_settings(data: Path, steps: int, **extra) -> dict:
    return {
        "data": str(data), "preset": "tiny", "steps": steps, "batch_size": 2, "crop": 32,
        "target_bpp": [0.2, 0.6], "acr_warmup": 1, "lr_decay_at": [], "log_every": 1, "checkpoint_every": 2,
        "adversarial": True, "d_channels": [4, 6], "d_accuracy_low": 0.0, "d_accuracy_high": 1.0, **extra,
    }


def test_adversarial_training_resumes_exactly_and_exports_no_discriminator(tmp_path: Path) -> None:
    """Bounds 0 and 1: the gate alternates, so 4 steps take both branches; a run checkpointed at
    step 2 and resumed ends with the same codec and discriminator as an uninterrupted one."""
    import json

    from safetensors.torch import load_file

    from imgcomp.systems.rippel2017.recipes import build_config
    from imgcomp.systems.rippel2017.training import train
    from imgcomp.training.checkpoint import load_checkpoint

    data = tmp_path / "data"
    data.mkdir()
    for seed in range(2):
        Image.fromarray(smooth_image(64, 64, seed=seed, noise=8.0)).save(data / f"{seed}.png")
    train(build_config(None, _tiny_gan_settings(data, 4)), tmp_path / "straight")
    train(build_config(None, _tiny_gan_settings(data, 2)), tmp_path / "resumed")
    train(build_config(None, _tiny_gan_settings(data, 4)), tmp_path / "resumed", resume=True)
    straight = load_file(str(tmp_path / "straight" / "model" / "model.safetensors"))
    resumed = load_file(str(tmp_path / "resumed" / "model" / "model.safetensors"))
    assert straight.keys() == resumed.keys() and all(torch.equal(straight[k], resumed[k]) for k in straight)
    a, b = (load_checkpoint(tmp_path / run / "checkpoint.pt") for run in ("straight", "resumed"))
    assert a["task"]["gate"] == b["task"]["gate"]
    assert all(torch.equal(v, b["task"]["discriminator"][k]) for k, v in a["task"]["discriminator"].items())
    assert "opt_d" in a and a["opt_d"]["state"]
    records = [json.loads(line) for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss" in r]
    assert [r["gan_d_step"] for r in steps] == [1.0, 0.0, 1.0, 0.0]
    assert all("d_accuracy" in r for r in steps) and "adv_weight" in steps[1] and steps[1]["adv_weight"] > 0
    # the export is the codec only
    plain = {k for k in RippelCodec(preset("tiny")).state_dict()}
    assert set(straight) == plain
    assert not any(k in straight for k in a["task"]["discriminator"])
    # and it is a working codec
    pixels = smooth_image(48, 64, seed=2)
    assert decode_image(encode_image(pixels, quality=2, model=tmp_path / "straight" / "model", lowpass=None).data,
                        model=tmp_path / "straight" / "model").shape == pixels.shape


def test_init_from_starts_with_the_models_weights_and_buffers(tmp_path: Path, tiny_model_dir: Path) -> None:
    from imgcomp.systems.rippel2017.recipes import build_config
    from imgcomp.systems.rippel2017.training import RippelTask

    data = tmp_path / "data"
    data.mkdir()
    Image.fromarray(smooth_image(64, 64, seed=0, noise=8.0)).save(data / "0.png")
    config = build_config(None, {**_tiny_gan_settings(data, 2), "init_from": str(tiny_model_dir), "preset": "cpu"})
    task = RippelTask(config, tmp_path / "run")
    start = load_model(tiny_model_dir)
    assert task.model.config.to_dict() == start.config.to_dict()  # the model's architecture, not the preset's
    own = task.model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in start.model.state_dict().items())
    assert task.discriminator is not None and "d" in task.optimisers
    with pytest.raises(ImgcompError, match="2 qualities"):
        build_config(None, {**_tiny_gan_settings(data, 2), "init_from": str(tiny_model_dir), "target_bpp": [0.1, 0.2, 0.3]}).model_config()
    with pytest.raises(ImgcompError, match="--init-from"):
        build_config("cpu-gan", {"data": str(data)})
    plain = RippelTask(build_config(None, {**_tiny_gan_settings(data, 2), "adversarial": False}), tmp_path / "plain")
    assert plain.discriminator is None and set(plain.optimisers) == {"ae"} and plain.extra_state() == {}


def test_cli_fine_tunes_with_the_cpu_gan_recipe(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from imgcomp.cli import _register_commands, app

    _register_commands()
    torch.manual_seed(0)
    start = export_model(RippelCodec(preset("tiny", qualities=5)).eval(), tmp_path / "start")
    data = tmp_path / "data"
    data.mkdir()
    for seed in range(2):
        Image.fromarray(smooth_image(48, 48, seed=seed, noise=8.0)).save(data / f"{seed}.png")
    result = CliRunner().invoke(app, [
        "train", "--system", "rippel2017", "--recipe", "cpu-gan", "--init-from", str(start), "--data", str(data),
        "--out", str(tmp_path / "run"), "--steps", "2", "--batch-size", "2", "--crop", "32",
    ])
    assert result.exit_code == 0, result.output
    stored = (tmp_path / "run" / "train_config.json").read_text()
    assert '"adversarial": true' in stored and str(start) in stored
    assert load_model(tmp_path / "run" / "model").config.to_dict() == load_model(start).config.to_dict()


def test_runtime_modules_do_not_reach_the_adversarial_or_training_code() -> None:
    from test_layout import _closure, _graphs

    top, anywhere = _graphs()
    graph = dict(anywhere)  # the package's hooks for training and recipes are not the runtime
    graph["imgcomp.systems.rippel2017"] = top["imgcomp.systems.rippel2017"]
    reached = _closure(graph, ["imgcomp.systems.rippel2017.stream", "imgcomp.systems.rippel2017.model"])
    assert "imgcomp.systems.rippel2017.stream" in reached
    assert not {m for m in reached if m.endswith((".adversarial", ".training", ".recipes")) or m.startswith("imgcomp.training")}


def test_training_for_the_lowpass_layer_and_encoding_with_its_settings(tmp_path: Path, monkeypatch) -> None:
    """``lowpass_block``: the distortion is measured on the output with the layer added, the model
    records the settings, and ``lowpass="auto"`` then codes with them without the per-image search
    (which a model trained without the layer still gets)."""
    from imgcomp import api
    from imgcomp.postfilter.lowpass import LowpassSettings
    from imgcomp.systems.rippel2017.recipes import build_config
    from imgcomp.systems.rippel2017.training import RippelTask, train

    data = tmp_path / "data"
    data.mkdir()
    for seed in range(2):
        Image.fromarray(smooth_image(80, 96, seed=seed, noise=8.0)).save(data / f"{seed}.png")
    settings = {
        "data": str(data), "preset": "tiny", "steps": 2, "batch_size": 2, "crop": 64, "target_bpp": [0.001, 0.002],
        "log_every": 1, "checkpoint_every": 2, "colour_weight": 0.5, "alpha_max": 0.0125, "acr_warmup": 0,
        "acr_gain": 1.0,
    }
    x = torch.from_numpy(smooth_image(64, 64, seed=3)).permute(2, 0, 1)[None].float().repeat(2, 1, 1, 1)
    losses = {}
    for block in (0, 16):
        task = RippelTask(build_config(None, {**settings, "lowpass_block": block}), tmp_path / f"task{block}")
        losses[block] = task.step(x, 0)[0]["distortion"]
        assert task.model.config.lowpass == ([16, 4] if block else None)
    assert losses[16] != pytest.approx(losses[0])
    train(build_config(None, {**settings, "lowpass_block": 16, "lowpass_step": 3}), tmp_path / "run")
    model = tmp_path / "run" / "model"
    assert load_model(model).config.lowpass == [16, 3]
    alphas = load_model(model).model.acr_alpha.tolist()  # the rate far above target: alpha rose to its clamp
    assert max(alphas) == pytest.approx(0.0125) and min(alphas) >= 0.01

    searches = []
    real_search = api.choose_lowpass
    monkeypatch.setattr(api, "choose_lowpass", lambda *args, **kw: searches.append(1) or real_search(*args, **kw))
    pixels = smooth_image(64, 80, seed=9)
    fixed = encode_image(pixels, quality=1, model=model, keep_reconstruction=True)
    assert fixed.lowpass == LowpassSettings(16, 3) and not searches
    assert np.array_equal(decode_image(fixed.data, model=model, engine="torch"), fixed.reconstruction)
    encode_image(pixels, quality=1, model=tmp_path / "run" / "model", lowpass=LowpassSettings(32, 4))
    assert not searches
    plain = tmp_path / "plain"
    export_model(RippelCodec(preset("tiny")).eval(), plain)
    encode_image(pixels, quality=1, model=plain)
    assert searches == [1]
    with pytest.raises(ImgcompError, match="colour_pool"):
        build_config(None, {**settings, "colour_pool": 0})
    with pytest.raises(ImgcompError, match="multiple of lowpass_block"):
        build_config(None, {**settings, "lowpass_block": 32, "crop": 48})
