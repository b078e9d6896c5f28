"""A training run killed at any moment resumes: SIGKILL during the first save (step 0), during a
later save, and between saves; `--resume` then reaches the weights of an uninterrupted run, the
export matches the checkpoint, stale temporary files are gone. Plus the CLI's resume path check,
the presets in --help and the Ctrl-C message."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from imgcomp.training.checkpoint import SAVE_DELAY_ENV

SRC = str(Path(__file__).resolve().parents[1] / "src")
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
STEPS = 6


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data") / "train"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        image = rng.integers(0, 255, (48, 56, 3), dtype=np.uint8)
        Image.fromarray(image).save(root / f"{i}.png")
    return root


def _command(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "imgcomp", "train", "--data", str(data), "--out", str(out), "--preset", "tiny",
        "--steps", str(STEPS), "--batch-size", "2", "--crop", "32", "--workers", "0", "--heads", "2",
        "--target-bpp", "0.5", "--checkpoint-every", "2", "--val-every", "1000", *extra,
    ]


def _env(delay: float = 0.0) -> dict:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    env[SAVE_DELAY_ENV] = str(delay)
    return env


def _weights(run: Path) -> dict:
    return torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)["model"]


def _run_and_kill(data: Path, out: Path, until) -> None:
    """Start a run with slow saves, SIGKILL it once ``until()`` holds."""
    process = subprocess.Popen(_command(data, out), env=_env(delay=1.5), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    try:
        while not until() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert process.poll() is None, "the run ended before the moment to kill it"
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()


def _resume(data: Path, out: Path, data_spelling: Path | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "imgcomp", "train", "--out", str(out), "--resume"]
    if data_spelling is not None:
        command += ["--data", str(data_spelling)]
    return subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=600)


def test_killed_runs_resume_to_the_uninterrupted_weights(data: Path, tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    done = subprocess.run(_command(data, reference), env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    expected = _weights(reference)

    tmp_name = ".checkpoint.pt.tmp"
    moments = {
        # during the very first save: only the temporary file of step 0 exists
        "first save": lambda out: (out / tmp_name).exists() and not (out / "checkpoint.pt").exists(),
        # during a later save (the checkpoint of step 0 is in place, step 2's is being written)
        "later save": lambda out: (out / "checkpoint.pt").exists() and (out / tmp_name).exists(),
        # between saves: step 0 saved and exported, no save in progress
        "between saves": lambda out: (out / "model" / "config.json").exists() and not (out / tmp_name).exists(),
    }
    for name, moment in moments.items():
        out = tmp_path / name.replace(" ", "-")
        _run_and_kill(data, out, lambda: moment(out))
        if name == "first save":  # nothing to resume from: --resume starts the run over
            assert (out / tmp_name).exists() and not (out / "checkpoint.pt").exists()
        # resumed with the data folder spelled differently (relative, through ..)
        spelling = Path(os.path.relpath(data, Path.cwd())).parent / ".." / data.parent.name / data.name
        done = _resume(data, out, spelling)
        assert done.returncode == 0, (name, done.stderr)
        assert not list(out.glob(".*.tmp")) and not list((out / "model").glob(".*.tmp")), name
        weights = _weights(out)
        for key, value in expected.items():
            assert torch.equal(value, weights[key]), (name, key)
        exported = json.loads((out / "model" / "config.json").read_text())["metadata"]["trained_steps"]
        assert exported == STEPS, name


def test_a_run_checkpoints_before_its_first_step(data: Path, tmp_path: Path) -> None:
    from imgcomp.systems.mentzer2018.training import TrainConfig, Trainer

    config = TrainConfig(data=str(data), preset="tiny", steps=1, batch_size=2, crop=32, heads=1, workers=0,
                         checkpoint_every=100, val_every=1000)
    trainer = Trainer(config, tmp_path / "run")
    saved = []
    original = trainer.save
    trainer.save = lambda: (saved.append(trainer.step), original())[1]
    trainer.run()
    assert saved[0] == 0 and saved[-1] == 1


def test_the_export_is_redone_when_it_lags_the_checkpoint(data: Path, tmp_path: Path) -> None:
    """A kill between the checkpoint and the export leaves the export behind: resume re-exports."""
    from imgcomp.models.export import load_model
    from imgcomp.systems.mentzer2018.training import TrainConfig, Trainer

    def config(steps: int) -> TrainConfig:
        return TrainConfig(data=str(data), preset="tiny", steps=steps, batch_size=2, crop=32, heads=1, workers=0,
                           checkpoint_every=2, val_every=1000)

    first = Trainer(config(2), tmp_path / "run")
    first._export = lambda: None  # the kill: checkpoints written, exports never
    first.run()
    assert first.exported_step() is None
    resumed = Trainer(config(2), tmp_path / "run")
    resumed.resume()
    resumed.run()
    assert load_model(tmp_path / "run" / "model").metadata["trained_steps"] == 2 == resumed.step


def test_train_help_lists_every_preset() -> None:
    from imgcomp.cli import _register_commands, app
    from imgcomp.systems.mentzer2018.config import PRESETS

    _register_commands()
    result = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "300"})
    assert result.exit_code == 0
    for name in PRESETS:
        assert name in result.output, name


def test_second_ctrl_c_says_where_the_run_stopped(data: Path, tmp_path: Path, monkeypatch) -> None:
    from imgcomp.cli import _register_commands, app
    import imgcomp.systems.mentzer2018.training as training

    class Stopping(training.loop.Trainer):
        def __init__(self, task, run_dir, progress=None):
            def stop(step, total, metrics):
                if step == 3:
                    raise KeyboardInterrupt
            super().__init__(task, run_dir, stop)

    monkeypatch.setattr(training.loop, "Trainer", Stopping)
    _register_commands()
    out = tmp_path / "run"
    result = CliRunner().invoke(app, [
        "train", "--data", str(data), "--out", str(out), "--preset", "tiny", "--steps", "6", "--batch-size", "2",
        "--crop", "32", "--workers", "0", "--heads", "1", "--checkpoint-every", "2", "--val-every", "1000",
    ])
    assert result.exit_code == 130
    assert f"interrupted at step 3; checkpoint at step 2 in {out}; resume with" in " ".join(result.output.split())

