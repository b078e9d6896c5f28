"""Training: losses, exact resume, Ctrl-C, DDP with two processes, CLI errors, export."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from imgcomp.errors import ImgcompError
from imgcomp.models.export import load_model
from imgcomp.training.batches import StepBatches
from imgcomp.systems.mentzer2018.training import MentzerTask, TrainConfig, Trainer, head_for_step

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for split, count in (("train", 3), ("val", 1)):
        (root / split).mkdir()
        for i in range(count):
            yy, xx = np.mgrid[0:72, 0:88]
            image = np.stack([xx * 3, yy * 3, (xx * yy) % 256], -1) + rng.normal(0, 10, (72, 88, 3))
            Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(root / split / f"{i}.png")
    return root


def tiny_config(data: Path, **overrides) -> TrainConfig:
    settings = dict(
        data=str(data / "train"), preset="tiny", steps=4, batch_size=2, crop=32, heads=2,
        target_bpp=0.5, workers=0, checkpoint_every=2, log_every=1, val_every=1000,
    )
    settings.update(overrides)
    return TrainConfig(**settings)


def test_batches_are_a_function_of_seed_and_step(data: Path) -> None:
    a = StepBatches(str(data / "train"), 32, 4, seed=1, workers=0)
    b = StepBatches(str(data / "train"), 32, 4, seed=1, workers=2)
    first = dict(a.iterate(0, 3))
    resumed = dict(b.iterate(2, 3))
    assert torch.equal(first[2], resumed[2])
    assert not torch.equal(first[0], first[1])
    assert first[0].shape == (4, 3, 32, 32)
    rank0 = dict(StepBatches(str(data / "train"), 32, 4, 1, 0, rank=0, world_size=2).iterate(0, 1))[0]
    rank1 = dict(StepBatches(str(data / "train"), 32, 4, 1, 0, rank=1, world_size=2).iterate(0, 1))[0]
    assert torch.equal(torch.cat([rank0, rank1]), first[0])


def test_crop_larger_than_images_is_a_clear_error(data: Path) -> None:
    with pytest.raises(ImgcompError, match="smaller than|at least"):
        StepBatches(str(data / "train"), 128, 2, 0)


def test_heads_are_deterministic_and_all_used() -> None:
    heads = [head_for_step(0, step, 3) for step in range(60)]
    assert heads == [head_for_step(0, step, 3) for step in range(60)]
    assert set(heads) == {0, 1, 2}


def test_resume_continues_exactly(data: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    straight = Trainer(tiny_config(data), tmp_path / "straight")
    straight.run()
    interrupted = Trainer(tiny_config(data), tmp_path / "resumed")
    interrupted.progress = lambda step, total, metrics: interrupted.request_stop() if step == 2 else None
    interrupted.run()
    resumed = Trainer(tiny_config(data), tmp_path / "resumed")
    resumed.resume()
    assert resumed.step == 2
    resumed.run()
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    torch.set_num_threads(2)


def test_stop_request_checkpoints_and_exports(data: Path, tmp_path: Path) -> None:
    trainer = Trainer(tiny_config(data, steps=50, val_data=str(data / "val")), tmp_path / "run")
    trainer.progress = lambda step, total, metrics: trainer.request_stop() if step == 3 else None
    result = trainer.run()
    assert result["stopped_early"] and trainer.step == 3
    assert "val_bpp_head0" not in result  # a stop request skips the final validation
    loaded = load_model(tmp_path / "run" / "model")
    assert loaded.metadata["trained_steps"] == 3
    assert loaded.metadata["head_target_bpp"] == [0.25, 0.5]
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["step"] == 1 and "masked_bpp" in records[0]
    assert any((tmp_path / "run" / "tensorboard").iterdir())


def test_masked_cost_never_exceeds_full_cost(data: Path, tmp_path: Path) -> None:
    trainer = Trainer(tiny_config(data, steps=3, val_data=str(data / "val")), tmp_path / "run")
    result = trainer.run()
    assert 0 < result["masked_bpp"] <= result["bpp"] + 1e-9
    assert "val_bpp_head1" in result and "val_ms_ssim_head0" in result  # validated at the end
    for head in (0, 1):
        assert 0 <= result[f"val_masked_bpp_head{head}"] <= result[f"val_bpp_head{head}"] + 1e-9
    images = len(list((data / "val").iterdir()))
    assert 0 <= result["val_bd_ms_ssim_images"] <= images and 0 <= result["val_bd_psnr_images"] <= images


def test_the_rate_reaches_the_encoder_through_p_but_not_p() -> None:
    """Sec. 3.2: the masked cost's gradient reaches E through P's input (soft quantization, eq. 4),
    even with every channel on (no gradient through the mask); P's weights get none of it."""
    from imgcomp.systems import create_model
    from imgcomp.systems.mentzer2018.config import preset
    from imgcomp.systems.mentzer2018.objective import coding_costs

    torch.manual_seed(0)
    config = preset("tiny", importance_heads=1)
    model = create_model(config)
    with torch.no_grad():
        model.encoder[-1].bias[config.latent_channels] = 50.0  # y = K: all on, sigmoid saturated
    out = model(torch.rand(2, 3, 32, 32) * 255)
    assert torch.allclose(out["encoder_bits"], out["bits"])
    _, masked_bpp = coding_costs(out["bits"], out["mask"], 32 * 32, out["encoder_bits"])
    masked_bpp.backward(retain_graph=True)
    assert all(p.grad is None for p in model.context_parameters())
    assert model.encoder[0][0].weight.grad.abs().sum() > 0
    assert model.quantizer.centers.grad.abs().sum() > 0
    model.zero_grad()
    _, mask_only = coding_costs(out["bits"], out["mask"], 32 * 32)  # the mask's path alone
    mask_only.backward()
    assert model.encoder[0][0].weight.grad is None or model.encoder[0][0].weight.grad.abs().sum() < 1e-6
    without = model(torch.rand(2, 3, 32, 32) * 255, rate_through_context=False)
    assert not without["encoder_bits"].requires_grad  # no second pass through P, no gradient through it


def test_training_settings_are_checked(data: Path) -> None:
    with pytest.raises(ImgcompError, match="rate_loss"):
        tiny_config(data, rate_loss="one_sided")
    with pytest.raises(ImgcompError, match="colour_weight"):
        tiny_config(data, colour_weight=-1.0)
    with pytest.raises(ImgcompError, match="multiple of colour_pool"):
        tiny_config(data, colour_weight=1.0, colour_pool=5)


@pytest.mark.parametrize("pool", [1, 8])
def test_the_colour_anchor_sees_the_colour_shift_that_ms_ssim_misses(pool: int) -> None:
    """A constant per-channel shift barely moves MS-SSIM (means enter only at its coarsest
    scale); the colour anchor adds exactly weight * |shift| / 255 per unit of the scale."""
    from imgcomp.systems.mentzer2018.objective import distortion

    torch.manual_seed(0)
    x = 50 + 150 * torch.rand(2, 3, 64, 64)
    shifted = x + torch.tensor([12.0, -12.0, 12.0]).view(1, 3, 1, 1)
    plain, value = distortion(x, shifted, 100.0)
    assert value > 0.99  # MS-SSIM hardly notices a colour cast
    anchored, same_value = distortion(x, shifted, 100.0, colour_weight=0.5, colour_pool=pool)
    assert same_value == value
    assert (anchored - plain).item() == pytest.approx(100.0 * 0.5 * 12.0 / 255.0, rel=1e-4)
    grad_target = shifted.clone().requires_grad_(True)
    distortion(x, grad_target, 100.0, colour_weight=0.5, colour_pool=pool)[0].backward()
    assert (grad_target.grad[:, 1] < 0).float().mean() > 0.9  # pushes the darkened green back up


def test_the_colour_anchor_reaches_the_run_config(data: Path, tmp_path: Path) -> None:
    from imgcomp.cli import _register_commands, app

    _register_commands()
    out = tmp_path / "run"
    result = CliRunner().invoke(app, [
        "train", "--data", str(data / "train"), "--out", str(out), "--preset", "tiny", "--steps", "2",
        "--crop", "32", "--batch-size", "2", "--workers", "0", "--colour-weight", "0.5", "--colour-pool", "8",
    ])
    assert result.exit_code == 0, result.output
    stored = json.loads((out / "train_config.json").read_text())
    assert (stored["colour_weight"], stored["colour_pool"]) == (0.5, 8)


def test_training_and_validation_with_the_low_pass_layer(data: Path, tmp_path: Path) -> None:
    """``--lowpass-block`` reaches the run config; validation scores the corrected output (as the
    codec decodes it) and reports the layer's own rate."""
    from imgcomp.cli import _register_commands, app

    _register_commands()
    out = tmp_path / "run"
    result = CliRunner().invoke(app, [
        "train", "--data", str(data / "train"), "--val-data", str(data / "val"), "--out", str(out),
        "--preset", "tiny", "--steps", "2", "--crop", "32", "--batch-size", "2", "--workers", "0",
        "--lowpass-block", "16", "--lowpass-step", "2",
    ])
    assert result.exit_code == 0, result.output
    stored = json.loads((out / "train_config.json").read_text())
    assert (stored["lowpass_block"], stored["lowpass_step"]) == (16, 2)
    final = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()][-1]
    assert final["val_lowpass_bpp_head0"] > 0
    plain = Trainer(tiny_config(data, steps=2, val_data=str(data / "val")), tmp_path / "plain").run()
    assert "val_lowpass_bpp_head0" not in plain


def test_training_with_the_mask_symbol(data: Path, tmp_path: Path) -> None:
    result = Trainer(tiny_config(data, steps=3, mask_symbol=True), tmp_path / "run").run()
    assert np.isfinite(result["loss"]) and 0 < result["masked_bpp"] <= result["bpp"] + 1e-9


def test_two_process_ddp(data: Path, tmp_path: Path) -> None:
    """torchrun launches two CPU processes (gloo) that train a few steps together."""
    out = tmp_path / "ddp"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone",
        "-m", "imgcomp", "train", "--data", str(data / "train"), "--out", str(out),
        "--preset", "tiny", "--steps", "3", "--batch-size", "4", "--crop", "32", "--workers", "0",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=240)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert load_model(out / "model").metadata["trained_steps"] == 3


def test_cli_errors() -> None:
    from imgcomp.cli import _register_commands, app

    _register_commands()
    runner = CliRunner()
    result = runner.invoke(app, ["train", "--out", "/tmp/imgcomp-nowhere", "--data", "/nonexistent"])
    assert result.exit_code != 0
    result = runner.invoke(app, ["train", "--out", "/tmp/imgcomp-nowhere", "--recipe", "nope", "--data", "."])
    assert result.exit_code != 0 and "unknown recipe" in str(result.exception)
    result = runner.invoke(app, ["train", "--data", "."])
    assert result.exit_code != 0 and "--out is required" in str(result.exception)
    result = runner.invoke(app, ["train", "--list-recipes"])  # needs no --out
    assert result.exit_code == 0 and "cpu-multirate-colour-lp:" in result.output


def test_every_shipped_model_has_a_recipe_and_recipes_start_from_shipped_names() -> None:
    """The default model's recipe fine-tunes a shipped model named by its name, which the trainer
    resolves to the package's folder; the recipe's architecture is the shipped model's."""
    from imgcomp.systems.mentzer2018.recipes import build_config
    from imgcomp.zoo import DEFAULT_MODEL, get_model, model_folder, shipped_models

    assert DEFAULT_MODEL in shipped_models()
    from imgcomp.systems import get_system

    described = " ".join(
        recipe["description"] for system in ("mentzer2018", "patel2019", "rippel2017") for recipe in get_system(system).recipes().RECIPES.values()
    )
    assert all(name in described for name in shipped_models())
    config = build_config("cpu-multirate-colour-lp", {"data": "."})
    assert config.init_from == "mentzer2018/cpu-colour" and config.lowpass is not None
    assert model_folder(config.init_from) == shipped_models()["mentzer2018/cpu-colour"]
    assert model_folder("mentzer2018-cpu-colour") == shipped_models()["mentzer2018/cpu-colour"]  # 0.5 name
    assert config.model_config().to_dict() == get_model("mentzer2018/cpu-colour-lp").config.to_dict()
    default = build_config("cpu-mixed", {"data": "."})  # the default's recipe continues 0.5's default
    assert default.init_from == "mentzer2018/cpu-colour-lp" and default.head_targets(5)[-1] == pytest.approx(1.0)
    assert default.model_config().to_dict() == get_model(DEFAULT_MODEL).config.to_dict()
    with pytest.raises(ImgcompError, match="not found"):
        model_folder("no-such-model")


def test_target_bpp_scales_a_recipes_per_head_targets() -> None:
    """--target-bpp on a recipe with per-head targets moves the highest to it, the others in
    proportion (it used to be ignored); explicit per-head targets win."""
    from imgcomp.systems.mentzer2018.recipes import RECIPES, build_config

    recipe = RECIPES["cpu-multirate-colour-lp"]["settings"]["head_target_bpp"]
    config = build_config("cpu-multirate-colour-lp", {"data": ".", "target_bpp": 1.6})
    assert config.head_targets(5) == pytest.approx([1.6 * t / recipe[-1] for t in recipe])
    assert config.head_targets(5)[-1] == pytest.approx(1.6)
    assert build_config("cpu-multirate-colour-lp", {"data": "."}).head_targets(5) == recipe
    explicit = [0.1, 0.2, 0.3, 0.4, 0.5]
    assert build_config("cpu-multirate-colour-lp", {"data": ".", "target_bpp": 1.6, "head_target_bpp": explicit}).head_targets(5) == explicit


def test_fine_tuning_recipes_need_init_from() -> None:
    """A recipe that fine-tunes (``needs_init_from``) is refused without --init-from, in every system."""
    from imgcomp.systems import get_system

    for system in ("rippel2017", "patel2019"):
        recipes = get_system(system).recipes()
        name = next(name for name, recipe in recipes.RECIPES.items() if recipe.get("needs_init_from"))
        with pytest.raises(ImgcompError, match=f"recipe {name} fine-tunes a trained model"):
            recipes.build_config(name, {"data": "."})
        assert recipes.build_config(name, {"data": ".", "init_from": "RUN/model"}).init_from == "RUN/model"


def test_cli_resume_of_a_run_from_before_the_rate_gradient_keeps_its_training(data: Path, tmp_path: Path) -> None:
    """A run folder whose train_config.json predates ``rate_through_context`` resumes without it."""
    from imgcomp.cli import _register_commands, app

    _register_commands()
    Trainer(tiny_config(data, steps=2), tmp_path / "run").run()
    path = tmp_path / "run" / "train_config.json"
    stored = json.loads(path.read_text())
    del stored["rate_through_context"]
    path.write_text(json.dumps(stored))
    result = CliRunner().invoke(app, ["train", "--out", str(tmp_path / "run"), "--resume", "--steps", "3"])
    assert result.exit_code == 0, result.output
    assert json.loads(path.read_text())["rate_through_context"] is False


def test_extending_steps_on_resume_moves_the_decay(data: Path, tmp_path: Path) -> None:
    first = Trainer(tiny_config(data, steps=8), tmp_path / "run")
    first.progress = lambda step, total, metrics: first.request_stop() if step == 4 else None
    first.run()
    longer = Trainer(tiny_config(data, steps=4), tmp_path / "run")  # decay at 3: already passed
    longer.resume()
    assert longer.optimisers["ae"].param_groups[0]["lr"] == pytest.approx(1e-5)
    assert longer.optimisers["p"].param_groups[0]["lr"] == pytest.approx(1e-5)


def test_context_only_training_keeps_the_auto_encoder(data: Path, tmp_path: Path) -> None:
    """A narrower P trained alone (eq. 21) on a trained model: E, D, Q and batch-norm statistics
    stay bit-identical, P learns (its cost falls), and the export records the new width."""
    Trainer(tiny_config(data), tmp_path / "base").run()
    base = load_model(tmp_path / "base" / "model")
    config = tiny_config(
        data, steps=30, init_from=str(tmp_path / "base" / "model"), context_channels=3,
        context_only=True, val_data=str(data / "val"), val_every=10,
    )
    trainer = Trainer(config, tmp_path / "narrow")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.run()
    assert not [w for w in caught if "lr_scheduler" in str(w.message)]  # the frozen optimiser never steps
    narrow = load_model(tmp_path / "narrow" / "model")
    assert narrow.config.context_channels == 3 and base.config.context_channels == 4
    base_state, narrow_state = base.model.state_dict(), narrow.model.state_dict()
    for key, value in base_state.items():
        if not key.startswith("context_model."):
            assert torch.equal(value, narrow_state[key]), key
    costs = [json.loads(line) for line in (tmp_path / "narrow" / "metrics.jsonl").read_text().splitlines()]
    costs = [record["bpp"] for record in costs if "bpp" in record and "val_bpp_head0" not in record]
    assert np.mean(costs[-5:]) < np.mean(costs[:5])


def test_context_only_training_can_switch_to_the_mask_symbol(data: Path, tmp_path: Path) -> None:
    """P is retrained from scratch for the larger alphabet; E, D, Q are kept."""
    Trainer(tiny_config(data), tmp_path / "base").run()
    config = tiny_config(
        data, steps=3, init_from=str(tmp_path / "base" / "model"), context_only=True, mask_symbol=True,
    )
    result = Trainer(config, tmp_path / "marked").run()
    assert 0 < result["masked_bpp"] <= result["bpp"] + 1e-9
    marked = load_model(tmp_path / "marked" / "model")
    assert marked.config.mask_symbol and marked.model.num_symbols == marked.config.num_centers + 1
    assert marked.model.context_model.conv_in.in_channels == 2


def test_widening_the_latent_keeps_what_the_old_channels_decode_to(data: Path, tmp_path: Path) -> None:
    """--latent-channels above init_from's K: the old channels' encoder rows and what D makes of
    them are unchanged, the new channels come last and start unused by D, the importance map is
    the old one where it is low, and P keeps its weights; narrowing is refused."""
    Trainer(tiny_config(data), tmp_path / "base").run()
    base = load_model(tmp_path / "base" / "model")
    old = base.config.latent_channels
    task = MentzerTask(tiny_config(data, init_from=str(tmp_path / "base" / "model"), latent_channels=old + 3), tmp_path / "wide")
    wide = task.model.eval()
    assert wide.config.latent_channels == old + 3
    x = torch.rand(1, 3, 32, 32) * 255
    with torch.no_grad():
        z_old, logits_old = base.model.encode_unmasked(x, 0)
        z_new, logits_new = wide.encode_unmasked(x, 0)
        assert torch.allclose(z_new[:, :old], z_old, atol=1e-5)
        assert torch.allclose(logits_new, logits_old - math.log((old + 3) / old), atol=1e-5)
        y_new = wide.importance(logits_new)[1]
        y_low = wide.importance(torch.full((1, 1, 1, 1), -12.0) - math.log((old + 3) / old))[1]
        assert y_low.item() == pytest.approx(base.model.importance(torch.full((1, 1, 1, 1), -12.0))[1].item(), rel=1e-4)
        assert float(y_new.max()) <= old + 3
        z_hat = base.model.quantize(z_old)[0]
        padded = torch.cat([z_hat, torch.randn(1, 3, *z_hat.shape[-2:])], dim=1)
        assert torch.allclose(wide.decode_latent(padded), base.model.decode_latent(z_hat), atol=1e-3)
    for key, value in base.model.context_model.state_dict().items():
        assert torch.equal(value, wide.context_model.state_dict()[key]), key
    with pytest.raises(ImgcompError, match="only grow"):
        MentzerTask(tiny_config(data, init_from=str(tmp_path / "base" / "model"), latent_channels=old - 1), tmp_path / "narrow")


@pytest.mark.parametrize("part", ["decoder", "encoder"])
def test_training_one_part_keeps_every_other_weight(data: Path, tmp_path: Path, part: str) -> None:
    """--decoder-only / --encoder-only: only that network's weights (and batch-norm statistics)
    change; the rest, P and the quantizer centers included, stay bit-identical, so with
    --decoder-only every file the base model wrote decodes with the new one."""
    Trainer(tiny_config(data), tmp_path / "base").run()
    base = load_model(tmp_path / "base" / "model")
    config = tiny_config(data, steps=6, init_from=str(tmp_path / "base" / "model"), lr=1e-2, **{f"{part}_only": True})
    result = Trainer(config, tmp_path / part).run()
    assert np.isfinite(result["loss"]) and 0.0 < result["ms_ssim"] <= 1.0
    tuned = load_model(tmp_path / part / "model")
    base_state, tuned_state = base.model.state_dict(), tuned.model.state_dict()
    changed = {key for key, value in base_state.items() if not torch.equal(value, tuned_state[key])}
    assert changed and all(key.startswith(f"{part}.") for key in changed), sorted(changed)[:3]
    assert any(key.endswith(".weight") for key in changed)


def test_one_part_modes_exclude_each_other(data: Path, tmp_path: Path) -> None:
    with pytest.raises(ImgcompError, match="exclude"):
        tiny_config(data, init_from="x", decoder_only=True, encoder_only=True)
    with pytest.raises(ImgcompError, match="init_from"):
        Trainer(tiny_config(data, decoder_only=True), tmp_path / "run")


def test_context_only_needs_a_model_to_start_from(data: Path, tmp_path: Path) -> None:
    with pytest.raises(ImgcompError, match="init_from"):
        Trainer(tiny_config(data, context_only=True), tmp_path / "run")


def test_an_export_writes_exact_files_that_decode_without_torch(data: Path, tmp_path: Path) -> None:
    """Every export builds its integer P, so a trained model writes stream version 2 at once (no
    stream version 1 warning) and its files decode with the numpy engine."""
    from imgcomp.api import decode_image, encode_image
    from imgcomp.container import unpack
    from imgcomp.models.torch_free import load_torch_free_model

    Trainer(tiny_config(data), tmp_path / "run").run()
    folder = tmp_path / "run" / "model"
    assert (folder / "context-int.safetensors").is_file()
    with pytest.raises(ImgcompError, match="a training run's model is .*run/model"):
        load_model(tmp_path / "run")  # the run folder given instead of its model
    with pytest.raises(ImgcompError, match="a training run's model is .*run/model"):
        load_torch_free_model(tmp_path / "run")  # the torch-free loader says the same
    pixels = np.asarray(Image.open(data / "val" / "0.png"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a stale or missing integer P would warn
        data_bytes = encode_image(pixels, 2, str(folder)).data
    assert unpack(data_bytes)[0].stream_version == 2
    by_numpy = decode_image(data_bytes, str(folder), engine="numpy")
    assert np.abs(by_numpy.astype(int) - decode_image(data_bytes, str(folder), engine="torch")).max() <= 1
