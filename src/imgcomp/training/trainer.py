"""The training loop every system uses: named optimisers, checkpoints, exact resume, DDP, logging.

A system supplies a :class:`TrainingTask` (Mentzer et al.:
:class:`imgcomp.systems.mentzer2018.training.MentzerTask`): the model, its named optimisers, one
training step and a validation. The loop owns the rest: batches that are pure functions of
``(seed, step)`` (so ``--resume`` continues exactly where an uninterrupted run would have been), a
step-decay schedule per optimiser, atomic checkpoints of the model, every optimiser and scheduler,
the step and the RNG state, the exported model (``RUN/model``), ``metrics.jsonl`` and TensorBoard,
Ctrl-C handling and periodic validation. Under ``torchrun`` the task's trained module is wrapped
in DistributedDataParallel (gloo on CPU, nccl on GPU) and each rank takes its own slice of every
step's batch.
"""

from __future__ import annotations

import json
import math
import random
import signal
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Protocol

import numpy as np
import torch

from imgcomp.errors import ImgcompError
from imgcomp.models.export import export_model
from imgcomp.postfilter.lowpass import LowpassSettings
from imgcomp.training import distributed
from imgcomp.training.batches import StepBatches, load_validation_images
from imgcomp.training.checkpoint import (
    CHECKPOINT_FILE, load_checkpoint, remove_stale_temporaries, rng_state, save_checkpoint, set_rng_state,
)

CONFIG_FILE = "train_config.json"
METRICS_FILE = "metrics.jsonl"
MODEL_DIR = "model"


@dataclass
class LoopConfig:
    """The settings the loop reads; a system's training config extends these."""

    data: str
    steps: int = 2000
    batch_size: int = 8
    crop: int = 128
    lr_decay_at: list[float] = field(default_factory=lambda: [0.75, 0.9])  # fractions of steps; x0.1
    val_data: Optional[str] = None
    val_every: int = 500
    val_images: Optional[int] = None  # the first N validation images; None: all of them
    checkpoint_every: int = 200
    log_every: int = 10
    seed: int = 0
    workers: int = 1


class TrainingTask(Protocol):
    """What a system gives the loop."""

    config: Any  # a LoopConfig subclass
    model: torch.nn.Module  # checkpointed whole and exported (its ``config.to_dict()`` too)
    optimisers: dict[str, torch.optim.Optimizer]  # by name; each gets a step-decay schedule
    logged_optimiser: str  # whose learning rate the logs show

    def trained_module(self) -> torch.nn.Module:
        """What DDP wraps (frozen parts are not wrapped: DDP syncs the gradients of what it wraps)."""

    def attach(self, net: torch.nn.Module) -> None:
        """Receive the (possibly DDP-wrapped) trained module the steps must call."""

    def train_mode(self) -> None: ...

    def step(self, x: torch.Tensor, step: int) -> tuple[dict[str, float], list[str]]:
        """One step on batch ``x``: the record to log and the optimisers that stepped."""

    def validate(self, images: list[np.ndarray], device: torch.device) -> dict[str, float]: ...

    def export_metadata(self, step: int) -> dict[str, Any]: ...

    def adopt_checkpoint_config(self, stored: dict[str, Any]) -> None:
        """Accept the checkpoint's model config or raise (input statistics may come from it)."""

    # Optional: ``extra_state() -> dict`` and ``load_extra_state(dict)``: training state outside
    # ``model`` (e.g. a discriminator's weights) that the checkpoint carries and the export does not.


def choice_for_step(seed: int, step: int, choices: int) -> int:
    """Which of ``choices`` (an importance head, a quality) ``step`` trains: random, but a pure
    function of seed and step, so a resumed run makes the same choices."""
    return random.Random(seed * 1_000_003 + step).randrange(choices)


def adopt_stored_config(config: Any, stored: dict[str, Any]) -> bool:
    """For ``adopt_checkpoint_config``: a resumed run's model config must be the checkpoint's,
    except the input statistics, which come from the checkpoint (measured on the data when the run
    started). Returns whether they were taken from it; raises on any other difference."""
    if stored == config.to_dict():
        return False
    config.input_mean, config.input_std = stored["input_mean"], stored["input_std"]
    if stored != config.to_dict():
        raise ImgcompError("checkpoint was trained with a different model configuration")
    return True


def distortion_options(
    crop: int, colour_weight: float, colour_pool: int, lowpass_block: int, lowpass_step: int
) -> LowpassSettings | None:
    """Checks the options both systems' distortions share (the colour anchor of
    :func:`imgcomp.criteria.colour_anchor`, training for the low-pass layer); the layer's settings
    (None: off)."""
    if colour_weight < 0.0 or colour_pool < 1:
        raise ImgcompError("colour_weight must be >= 0 and colour_pool >= 1")
    if colour_pool > 1 and crop % colour_pool:
        raise ImgcompError(f"crop {crop} is not a multiple of colour_pool {colour_pool}")
    if not lowpass_block:
        return None
    settings = LowpassSettings(lowpass_block, lowpass_step)  # raises on bad values
    if crop % lowpass_block:
        raise ImgcompError(f"crop {crop} is not a multiple of lowpass_block {lowpass_block}")
    return settings


def check_finite(loss: torch.Tensor, step: int) -> None:
    if not torch.isfinite(loss):
        raise ImgcompError(f"training diverged at step {step} (loss {loss})")


class Trainer:
    """Runs, checkpoints, validates and exports one training run of ``task`` in ``run_dir``."""

    def __init__(self, task: TrainingTask, run_dir: Path, progress: Callable[..., Any] | None = None):
        self.task = task
        self.config = task.config
        self.run_dir = run_dir
        self.progress = progress
        self.dist = distributed.setup()
        self.model = task.model
        self.model.to(self.dist.device)
        task.attach(distributed.wrap(task.trained_module(), self.dist))
        self.optimisers = task.optimisers
        milestones = [int(f * self.config.steps) for f in self.config.lr_decay_at]
        self.schedulers = {
            name: torch.optim.lr_scheduler.MultiStepLR(optimiser, milestones, 0.1)
            for name, optimiser in self.optimisers.items()
        }
        self.step = 0
        self.checkpoint_step: int | None = None  # the step of the newest checkpoint on disk
        self._resumed = False
        self._stop_requested = False
        self._writer = None
        self._val_images: list[np.ndarray] | None = None  # decoded once, on first validation

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        state = {"model": self.model.state_dict(), "model_config": self.model.config.to_dict()}
        for name in self.optimisers:  # opt_ae, sched_ae, ...: the keys of imgcomp 0.5's checkpoints
            state[f"opt_{name}"] = self.optimisers[name].state_dict()
            state[f"sched_{name}"] = self.schedulers[name].state_dict()
        extra_state = getattr(self.task, "extra_state", None)
        if extra_state is not None:
            state["task"] = extra_state()
        return {**state, "step": self.step, "rng": rng_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.task.adopt_checkpoint_config(state["model_config"])
        self.model.load_state_dict(state["model"])
        load_extra_state = getattr(self.task, "load_extra_state", None)
        if load_extra_state is not None:  # checkpoints from before the hook have none: {}
            load_extra_state(state.get("task", {}))
        for name in self.optimisers:
            self.optimisers[name].load_state_dict(state[f"opt_{name}"])
            self.schedulers[name].load_state_dict(state[f"sched_{name}"])
        self.step = state["step"]
        set_rng_state(state["rng"])
        self._reschedule()

    def _reschedule(self) -> None:
        """Apply this run's (possibly changed) ``steps`` to the decay milestones after a resume."""
        milestones = [int(f * self.config.steps) for f in self.config.lr_decay_at]
        for scheduler in self.schedulers.values():
            scheduler.milestones = Counter(milestones)
            passed = sum(1 for m in milestones if m <= scheduler.last_epoch)
            for group, base in zip(scheduler.optimizer.param_groups, scheduler.base_lrs):
                group["lr"] = base * scheduler.gamma**passed

    def resume(self) -> None:
        if self.dist.is_main:
            remove_stale_temporaries(self.run_dir, self.run_dir / MODEL_DIR)
        self.load_state_dict(load_checkpoint(self.run_dir / CHECKPOINT_FILE))
        self.checkpoint_step = self.step
        self._resumed = True

    def save(self) -> None:
        """Checkpoint, then export the same weights. A kill between the two leaves an export of an
        older step; :meth:`_sync_export` redoes it on resume (both record their step)."""
        if not self.dist.is_main:
            return
        save_checkpoint(self.run_dir / CHECKPOINT_FILE, self.state_dict())
        self.checkpoint_step = self.step
        self._export()

    def _export(self) -> None:
        export_model(self.model, self.run_dir / MODEL_DIR, self.task.export_metadata(self.step), force=True)
        after_export = getattr(self.task, "after_export", None)  # e.g. files the system derives from the weights
        if after_export is not None:
            after_export(self.run_dir / MODEL_DIR)

    def exported_step(self) -> int | None:
        """The step ``RUN/model`` was exported at (None: no complete export)."""
        config = self.run_dir / MODEL_DIR / "config.json"
        try:
            return json.loads(config.read_text())["metadata"]["trained_steps"]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _sync_export(self) -> None:
        """After a resume: re-export if a kill left ``RUN/model`` behind (or ahead of) the checkpoint."""
        if self.dist.is_main and self.exported_step() != self.step:
            self._export()

    # ----------------------------------------------------------------- loop
    def request_stop(self, *_: Any) -> None:
        """First Ctrl-C: finish the current step, checkpoint, stop. Second: stop at once."""
        if self._stop_requested:
            raise KeyboardInterrupt
        self._stop_requested = True

    def run(self) -> dict[str, Any]:
        """Train until ``config.steps`` or a stop request; returns the last logged metrics."""
        cfg = self.config
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.dist.is_main:
            (self.run_dir / CONFIG_FILE).write_text(json.dumps(asdict(cfg), indent=2) + "\n")
        previous_handler = signal.signal(signal.SIGINT, self.request_stop)
        batches = StepBatches(
            cfg.data, cfg.crop, cfg.batch_size, cfg.seed, cfg.workers,
            rank=self.dist.rank, world_size=self.dist.world_size,
        )
        last: dict[str, Any] = {}
        window: list[dict[str, float]] = []
        started = time.perf_counter()
        first_step = self.step
        try:
            if self._resumed:
                self._sync_export()
            else:  # a checkpoint before the first step: a kill at any moment leaves a run to resume
                if self.dist.is_main:
                    remove_stale_temporaries(self.run_dir, self.run_dir / MODEL_DIR)
                self.save()
            self.task.train_mode()
            for step, x in batches.iterate(self.step, cfg.steps):
                x = x.to(self.dist.device, non_blocking=True)
                record, stepped = self.task.step(x, step)
                for name in stepped:  # a frozen part's optimiser and schedule never step
                    self.schedulers[name].step()
                self.step = step + 1
                window.append(record)
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    last = self._log(window, time.perf_counter() - started, self.step - first_step)
                    window = []
                if self.progress is not None:
                    self.progress(self.step, cfg.steps, last)
                if self._stop_requested:
                    break
                if self.step % cfg.checkpoint_every == 0:
                    self.save()
                if cfg.val_data and self.step % cfg.val_every == 0 and self.dist.is_main:
                    last.update(self.validate())
                    self._write_metrics({"step": self.step, **last})
            self.save()
            finished = not self._stop_requested and self.step % cfg.val_every != 0
            if cfg.val_data and self.dist.is_main and finished:
                last.update(self.validate())
                self._write_metrics({"step": self.step, **last})
        finally:
            signal.signal(signal.SIGINT, previous_handler)
            batches.close()
            if self._writer is not None:
                self._writer.close()
        last["stopped_early"] = self._stop_requested
        last["step"] = self.step
        return last

    def validate(self) -> dict[str, float]:
        """The task's validation on ``val_data`` (images decoded once)."""
        if self._val_images is None:
            self._val_images = load_validation_images(self.config.val_data, self.config.val_images)
        self.model.eval()
        with torch.no_grad():
            results = self.task.validate(self._val_images, self.dist.device)
        self.task.train_mode()
        return results

    def _log(self, window: list[dict[str, float]], elapsed: float, steps_done: int) -> dict[str, Any]:
        keys = {k for record in window for k in record}
        summary: dict[str, Any] = {
            k: float(np.mean([r[k] for r in window if k in r])) for k in sorted(keys)
        }
        summary["steps_per_s"] = steps_done / max(elapsed, 1e-9)
        summary["images_per_s"] = summary["steps_per_s"] * self.config.batch_size
        summary["lr"] = self.schedulers[self.task.logged_optimiser].get_last_lr()[0]
        self._write_metrics({"step": self.step, **summary})
        return summary

    def _write_metrics(self, record: dict[str, Any]) -> None:
        if not self.dist.is_main:
            return
        with open(self.run_dir / METRICS_FILE, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        writer = self._tensorboard()
        if writer is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                    writer.add_scalar(key, value, record["step"])
            writer.flush()

    def _tensorboard(self):
        if self._writer is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # pragma: no cover - tensorboard is a dependency
                return None
            self._writer = SummaryWriter(str(self.run_dir / "tensorboard"))
        return self._writer


def train(task: TrainingTask, run_dir: Path, resume: bool = False, progress=None) -> dict[str, Any]:
    """Train (or resume) a run; the model is exported to ``run_dir/model`` at every checkpoint."""
    trainer = Trainer(task, run_dir, progress)
    try:
        # A run killed during its first save (step 0) has its config but no checkpoint: it starts over.
        if resume and (run_dir / CHECKPOINT_FILE).is_file():
            trainer.resume()
        elif resume and not (run_dir / CONFIG_FILE).is_file():
            raise ImgcompError(f"{run_dir / CHECKPOINT_FILE}: no checkpoint to resume from")
        return trainer.run()
    except KeyboardInterrupt as exc:  # a second Ctrl-C: the caller says where the run stands
        exc.step, exc.checkpoint_step = trainer.step, trainer.checkpoint_step  # type: ignore[attr-defined]
        raise
    finally:
        # Drop the DDP wrapper while its process group lives: freed after teardown, it hangs a rank.
        task.attach(task.trained_module())
        distributed.teardown(trainer.dist)
