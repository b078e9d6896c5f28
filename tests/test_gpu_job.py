"""The GPU training job (issue 17): sharded exports, the packed training set, device crops, the
job's loop in its CPU smoke mode, and the smoke script in a fresh venv (slow)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from imgcomp.errors import ImgcompError
from imgcomp.systems.base import create_model
from imgcomp.systems.mentzer2018.config import preset
from imgcomp.models.export import export_model, load_model
from imgcomp.weights_shards import (
    export_sharded,
    is_sharded,
    load_shards,
    merge_shards,
    shard_files,
    split_state,
    weights_sha256,
)

ROOT = Path(__file__).resolve().parents[1]


def _tiny_model(seed: int = 0):
    torch.manual_seed(seed)
    config = preset("tiny", importance_heads=2)
    return create_model(config)


def _photos(folder: Path, sizes=((96, 120), (80, 80), (130, 100)), seed: int = 0) -> Path:
    """Small textured RGB images, every pixel >= 1 (so padding, which is 0, shows)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i, (h, w) in enumerate(sizes):
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([(xx * 3 + i * 40) % 200, (yy * 2 + 30) % 200, (xx + yy) % 200], -1)
        noise = rng.integers(0, 50, (h, w, 3))
        Image.fromarray((base + noise + 1).astype(np.uint8)).save(folder / f"img{i}.png")
    return folder


# ------------------------------------------------------------------ shards
def test_sharded_export_loads_with_the_single_file_identity(tmp_path):
    model = _tiny_model()
    single = export_model(model, tmp_path / "single")
    sharded = export_sharded(model, tmp_path / "sharded", {"note": 1}, max_bytes=12 * 1024)
    shards = shard_files(sharded)
    assert len(shards) >= 2 and all(p.stat().st_size <= 12 * 1024 for p in shards)
    assert is_sharded(sharded) and not is_sharded(single)
    a, b = load_model(single), load_model(sharded)
    assert b.weights_sha256 == a.weights_sha256  # files made with one decode with the other
    assert b.metadata == {"note": 1}
    for key, value in a.model.state_dict().items():
        assert torch.equal(value, b.model.state_dict()[key])
    merged = merge_shards(sharded, tmp_path / "merged")
    assert load_model(merged).weights_sha256 == a.weights_sha256
    assert weights_sha256(model.state_dict()) == a.weights_sha256


def test_sharded_export_rewrites_and_refuses_mixed_shards(tmp_path):
    out = tmp_path / "m"
    export_sharded(_tiny_model(0), out, max_bytes=8 * 1024)
    first = len(shard_files(out))
    export_sharded(_tiny_model(1), out, max_bytes=64 * 1024)  # fewer shards: stale ones removed
    assert len(shard_files(out)) < first and load_model(out)
    document = json.loads((out / "config.json").read_text())
    export_sharded(_tiny_model(2), tmp_path / "other", max_bytes=64 * 1024)
    shutil.copy(shard_files(tmp_path / "other")[0], shard_files(out)[0])  # a kill mid-save
    with pytest.raises(ImgcompError, match="does not match"):
        load_model(out)
    with pytest.raises(ImgcompError, match="missing"):
        load_shards(out, [{"file": "model-00009-of-00009.safetensors", "sha256": "0"}])
    with pytest.raises(ImgcompError, match="does not list"):
        load_shards(out, [])
    assert document["shards"]
    with pytest.raises(ImgcompError, match="does not fit"):
        split_state({"w": torch.zeros(10_000)}, 1024)


def test_sharded_model_encodes_decodes_and_starts_a_cpu_run(tmp_path):
    from imgcomp.api import compress, decompress
    from imgcomp.systems.mentzer2018.training import TrainConfig, train

    folder = export_sharded(_tiny_model(), tmp_path / "gpu-out", {}, max_bytes=12 * 1024)
    image = np.asarray(Image.open(_photos(tmp_path / "p") / "img0.png"))[:64, :64]
    data = compress(image, model=str(folder))
    assert decompress(data, model=str(folder), as_array=True).shape == (64, 64, 3)
    config = TrainConfig(data=str(tmp_path / "p"), init_from=str(folder), steps=2, batch_size=2, crop=32,
                         checkpoint_every=2, log_every=1, workers=0)
    train(config, tmp_path / "run")
    assert load_model(tmp_path / "run" / "model").config.importance_heads == 2


# ------------------------------------------------------------------ pack
def test_pack_fills_the_budget_with_reproducible_crops(tmp_path):
    from imgcomp.data.pack import pack_training_set

    pool = _photos(tmp_path / "pool", sizes=((96, 120), (70, 90), (40, 40)))
    report = pack_training_set([pool], tmp_path / "packed", max_bytes=60_000, crop=64, min_size=48)
    manifest = json.loads((tmp_path / "packed" / "manifest.json").read_text())
    files = sorted((tmp_path / "packed").glob("*.jpg"))
    assert report.crops == len(files) == len(manifest["files"]) > 3
    assert report.total_bytes == sum(p.stat().st_size for p in files) <= 60_000
    assert all(Image.open(p).size[0] <= 64 and min(Image.open(p).size) >= 48 for p in files)
    assert {Path(e["source"]).name for e in manifest["files"]} <= {"img0.png", "img1.png"}  # 40px: too small
    again = pack_training_set([pool], tmp_path / "again", max_bytes=60_000, crop=64, min_size=48)
    assert again.total_bytes == report.total_bytes
    assert [e["sha256"] for e in json.loads((tmp_path / "again" / "manifest.json").read_text())["files"]] == [
        e["sha256"] for e in manifest["files"]
    ]
    with pytest.raises(ImgcompError, match="not empty"):
        pack_training_set([pool], tmp_path / "packed", max_bytes=60_000, crop=64)


def test_pack_command(tmp_path):
    import typer
    from typer.testing import CliRunner

    from imgcomp.cli import data as data_cli

    app = typer.Typer()
    data_cli.register(app)
    pool = _photos(tmp_path / "pool")
    result = CliRunner().invoke(app, [
        "data", "pack", "--from", str(pool), "--out", str(tmp_path / "out"), "--max-mib", "0.05",
        "--crop", "64", "--format", "png",
    ])
    assert result.exit_code == 0, result.output
    assert "crops" in result.output and list((tmp_path / "out").glob("*.png"))


# ------------------------------------------------------------------ device crops
def test_device_crops_stay_inside_each_image(tmp_path):
    from imgcomp.training.accelerate import DeviceCrops

    crops = DeviceCrops(_photos(tmp_path / "p"), 64, torch.device("cpu"), seed=3)
    assert len(crops) == 3
    x = crops.batch(16)
    assert x.shape == (16, 3, 64, 64) and x.dtype == torch.float32
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert float(x.min()) >= 1.0  # never the zero padding of the smaller images
    other = DeviceCrops(_photos(tmp_path / "p"), 64, torch.device("cpu"), seed=3)
    assert torch.equal(other.batch(16), x)  # seeded


def test_prepare_model_keeps_state_dict_and_outputs(tmp_path):
    from imgcomp.training.accelerate import autocast, prepare_model

    model = _tiny_model()
    x = torch.rand(2, 3, 32, 32) * 255
    reference = model(x, 1)
    keys = list(model.state_dict())
    prepare_model(model, torch.device("cpu"))
    assert list(model.state_dict()) == keys
    with autocast(torch.device("cpu")):
        out = model(x.contiguous(memory_format=torch.channels_last), 1)
    assert out["x_hat"].dtype == torch.float32 and out["bits"].dtype == torch.float32
    assert torch.allclose(out["x_hat"], reference["x_hat"], atol=1e-3)


# ------------------------------------------------------------------ the job, in-process
def test_gpu_job_smoke_in_process(tmp_path):
    from imgcomp.systems.mentzer2018.gpu_job import MAX_FILES, main

    data = _photos(tmp_path / "data", sizes=((96, 120), (80, 80), (130, 100), (64, 64)))
    out = tmp_path / "out"
    lines: list[str] = []
    summary = main([
        "--smoke", "--data", str(data), "--out", str(out), "--max-shard-mib", "0.015",
        "--checkpoint-steps", "10",
    ], log=lines.append)
    assert summary["finished"] and summary["steps"] == 20 and summary["saves"] == 2
    assert summary["images_per_s"] > 0 and summary["shards"] >= 2
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= MAX_FILES and "job.json" in files and "metrics.jsonl" in files
    assert all((out / f).stat().st_size <= 16 * 2**20 for f in files)
    job = json.loads((out / "job.json").read_text())
    assert job["finished"] and job["steps"] == 20
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [5, 10, 15, 20]
    loaded = load_model(out)
    assert loaded.metadata["trained_steps"] == 20 and loaded.metadata["gpu_job"]["finished"]
    assert loaded.config.importance_heads == 2 and loaded.config.channels == 8
    assert any("images/s" in line for line in lines)
    assert "context-int.safetensors" in files and any("integer context model built" in line for line in lines)
    from imgcomp.api import encode_image
    from imgcomp.container import unpack

    encoded = encode_image(np.asarray(Image.open(next(data.iterdir())).convert("RGB")), 2, str(out)).data
    assert unpack(encoded)[0].stream_version == 2  # the returned folder writes exact files at once
    # a second job continues from the returned (sharded) folder
    again = main(["--smoke", "--data", str(data), "--out", str(tmp_path / "out2"), "--init-from", str(out),
                  "--steps", "5"], log=lines.append)
    assert again["finished"] and again["steps"] == 5
    assert load_model(tmp_path / "out2").config.input_mean == loaded.config.input_mean


def test_gpu_job_refuses_a_model_that_would_not_come_back(tmp_path, capsys):
    from imgcomp.systems.mentzer2018.gpu_job import main

    data = _photos(tmp_path / "data")
    with pytest.raises(SystemExit):
        main(["--smoke", "--preset", "paper", "--data", str(data), "--out", str(tmp_path / "o"),
              "--max-shard-mib", "1"], log=lambda m: None)
    assert "do not fit" in capsys.readouterr().err


def test_gpu_recipes_and_travel_size():
    from imgcomp.models.export import load_model  # noqa: F401  (import path used by the job)
    from imgcomp.systems.mentzer2018.recipes import RECIPES, build_config
    from imgcomp.training.travel import travel_size

    config = build_config("gpu-multirate", {"data": "x"})
    assert config.preset == "mid" and config.batch_size == 32 and config.crop == 256
    assert config.model_config().importance_heads == 5
    assert "gpu-multirate-paper" in RECIPES
    report = travel_size(ROOT, carry=[])
    assert report["parts"] and report["total_bytes"] < report["limit_bytes"]


# ------------------------------------------------------------------ the script, fresh venv
@pytest.mark.slow
def test_gpu_smoke_script_in_a_fresh_venv(tmp_path):
    """scripts/gpu_smoke.sh: a venv with only the GPU machine's packages plus the carried wheels
    (created once in .gpu-smoke/venv), the real shell entry, 20 steps, a sharded export."""
    if not list((ROOT / ".gpu" / "wheels").glob("*.whl")):
        pytest.skip("wheels not prepared: run scripts/gpu_prepare.sh (SKIP_DATA=1 for wheels only)")
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(OUT=str(out), DATA=str(_photos(tmp_path / "data", sizes=((96, 120), (80, 80), (130, 100)))))
    started = time.perf_counter()
    result = subprocess.run(
        [str(ROOT / "scripts" / "gpu_smoke.sh"), "gpu-multirate", "10", "--max-shard-mib", "0.015"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "installing" in result.stdout and "finished: 20 steps" in result.stdout
    assert json.loads((out / "job.json").read_text())["finished"]
    assert len(shard_files(out)) >= 2 and load_model(out).metadata["trained_steps"] == 20
    print(f"smoke script: {time.perf_counter() - started:.1f} s")


def test_fp32_parts_under_an_active_bf16_autocast():
    """The CUDA path's precision split, exercised with CPU autocast: E and D may compute in
    bf16, but P's logits, the bits, the latent and the reconstruction are fp32, and a step of the
    job's loss trains."""
    from imgcomp.training.accelerate import prepare_model
    from imgcomp.systems.mentzer2018.objective import LossWeights, rate_distortion_loss

    model = _tiny_model()
    prepare_model(model, torch.device("cpu"))
    seen = {}

    def record(name):
        def hook(module, inputs, output):
            seen.setdefault(name, output.dtype)  # returns None: the output is unchanged

        return hook

    model.encoder[0].register_forward_hook(record("encoder"))
    model.context_model.register_forward_hook(record("context"))
    x = (torch.rand(2, 3, 32, 32) * 255).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, 1, rate_through_context=True)
    assert seen == {"encoder": torch.bfloat16, "context": torch.float32}
    for key in ("x_hat", "bits", "encoder_bits", "logits", "mask"):
        assert out[key].dtype == torch.float32, key
    terms = rate_distortion_loss(x, out, 0.2, LossWeights(colour_weight=0.5), model.quantizer.regularization())
    terms.total.backward()
    assert torch.isfinite(terms.total)
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
