"""The GPU training job: train a recipe for a wall-clock budget and leave sharded weights in OUT.

Run by ``scripts/gpu_train.sh`` on a lent GPU machine (see docs/training-gpu.md)::

    python -m imgcomp.systems.mentzer2018.gpu_job --recipe gpu-multirate --minutes 8 --data .gpu/data --out $OUT

and by the same script with ``--smoke`` on a CPU (tiny preset, 20 steps). What it writes to OUT
(at most 8 files, each at most 16 MiB, 64 MiB together; checked before training starts):

* ``config.json`` + ``model-0000i-of-0000n.safetensors``: the model, a folder ``--model`` and
  ``--init-from`` take (:mod:`imgcomp.weights_shards`). Rewritten every ``--checkpoint-minutes``
  (default 2), so a job killed at its limit still returns the weights of its last save.
* ``metrics.jsonl``: training metrics every ``log_every`` steps.
* ``job.json``: the run's state and throughput (steps, images/s, elapsed), rewritten at every
  save; ``"finished": false`` while it runs.

The loop is the joint step of :class:`~imgcomp.systems.mentzer2018.training.MentzerTask` (sec. 3.5 of Mentzer et
al. 2018: one backward pass, both Adam optimisers) with the learning-rate decays at fractions of
the time budget instead of the step count; crops come from :class:`~imgcomp.training.accelerate.DeviceCrops`.
No optimiser state travels back (it would double the files): a returned model continues on a CPU
with ``imgcomp train --init-from OUT`` (fresh Adam moments), as fine-tunes of shipped models do.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

import torch

from imgcomp.errors import ImgcompError
from imgcomp.training import accelerate

MAX_FILES = 8
MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_TOTAL_BYTES = 64 * 1024 * 1024
RESERVED_FILES = 4  # config.json, metrics.jsonl, job.json, context-int.safetensors
RESERVED_BYTES = 2 * 1024 * 1024  # what they may take together (metrics.jsonl grows)
SMOKE = {  # a CPU check of the whole path in seconds
    "preset": "tiny", "heads": 2, "batch_size": 4, "crop": 64, "head_target_bpp": None,
    "colour_weight": 0.5, "log_every": 5,
}
SMOKE_STEPS = 20
SMOKE_SHARD_MIB = 0.015


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m imgcomp.systems.mentzer2018.gpu_job", description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", default="gpu-multirate", help="named recipe (imgcomp train --list-recipes)")
    p.add_argument("--minutes", type=float, default=8.0, help="wall-clock training budget (default 8)")
    p.add_argument("--data", default=".gpu/data", help="packed training set (imgcomp data pack)")
    p.add_argument("--out", default=os.environ.get("OUT") or "gpu-out", help="output folder (default $OUT)")
    p.add_argument("--steps", type=int, default=None, help="stop after this many steps (default: the time budget decides)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--crop", type=int, default=None)
    p.add_argument("--preset", default=None)
    p.add_argument("--init-from", default=None, help="model folder or shipped name to start from")
    p.add_argument("--checkpoint-minutes", type=float, default=2.0, help="save the model this often")
    p.add_argument("--checkpoint-steps", type=int, default=None, help="also save every N steps")
    p.add_argument("--max-shard-mib", type=float, default=None, help=f"largest shard (default 16 MiB; {SMOKE_SHARD_MIB} with --smoke, so the tiny model is sharded too)")
    p.add_argument("--device", default="auto", help="auto, cuda or cpu")
    p.add_argument("--no-amp", action="store_true", help="no bf16 autocast on CUDA")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--smoke", action="store_true", help=f"tiny preset, {SMOKE_STEPS} steps, tiny shards: checks the path on a CPU")
    return p


def smoke_data(folder: Path) -> Path:
    """scikit-image's bundled photos (astronaut, chelsea, coffee, ...) as PNGs: a smoke run's
    training set where no packed set exists (a clean clone)."""
    from PIL import Image
    from skimage import data as photos

    folder.mkdir(parents=True, exist_ok=True)
    for name in ("astronaut", "chelsea", "coffee", "rocket"):
        image = getattr(photos, name)()
        Image.fromarray(image).save(folder / f"{name}.png")
    return folder


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    if args.smoke and not Path(args.data).is_dir():
        args.data = str(smoke_data(Path(args.out) / ".smoke-data"))
    overrides: dict[str, Any] = {"data": str(args.data)}
    if args.smoke:
        overrides.update(SMOKE)
    for key in ("batch_size", "crop", "preset", "init_from", "seed"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    return overrides


class GpuJob:
    """One run: model, optimisers, device-resident crops, time-budgeted loop, sharded saves."""

    def __init__(self, args: argparse.Namespace, log=print) -> None:
        from imgcomp.systems.base import create_model
        from imgcomp.models.export import load_model
        from imgcomp.training.batches import input_statistics
        from imgcomp.systems.mentzer2018.objective import LossWeights
        from imgcomp.systems.mentzer2018.recipes import build_config
        from imgcomp.zoo import model_folder

        self.args, self.log = args, log
        self.config = build_config(args.recipe, _settings(args))
        self.log_every = max(1, self.config.log_every)
        self.max_steps = args.steps if args.steps is not None else (SMOKE_STEPS if args.smoke else None)
        self.budget_s = args.minutes * 60.0
        self.out = Path(args.out)
        self.device = accelerate.pick_device("cpu" if args.smoke and args.device == "auto" else args.device)
        self.amp = not args.no_amp
        accelerate.setup_backends(self.device)
        cfg = self.config
        if cfg.context_only or cfg.decoder_only or cfg.encoder_only or cfg.lowpass_block:
            raise ImgcompError("the GPU job trains whole models without the low-pass layer; use `imgcomp train` for partial or low-pass fine-tunes")
        torch.manual_seed(cfg.seed)
        start = load_model(model_folder(cfg.init_from)) if cfg.init_from is not None else None
        model_config = cfg.model_config(start.config if start is not None else None)
        if start is None:
            model_config.input_mean, model_config.input_std = input_statistics(cfg.data)
        self.model = create_model(model_config)
        if start is not None:
            own = self.model.state_dict()
            kept = {k: v for k, v in start.model.state_dict().items() if k in own and own[k].shape == v.shape}
            if any(k.startswith("context_model.") and k not in kept for k in own):  # P changed: fresh P
                kept = {k: v for k, v in kept.items() if not k.startswith("context_model.")}
            missing = sorted(k for k in own if k not in kept and not k.startswith("context_model."))
            if missing:
                raise ImgcompError(f"{start.path}: its auto-encoder does not fit this run's model ({missing[0]})")
            self.model.load_state_dict(kept, strict=False)
        shard_mib = args.max_shard_mib if args.max_shard_mib is not None else (SMOKE_SHARD_MIB if args.smoke else 16.0)
        self.max_shard_bytes = int(shard_mib * 1024 * 1024)
        self._check_output_budget()
        accelerate.prepare_model(self.model, self.device)
        cuda = self.device.type == "cuda"
        ae = self.model.autoencoder_parameters()
        p = self.model.context_parameters()
        self.opt_ae = torch.optim.Adam(ae, lr=cfg.lr, fused=True) if cuda else torch.optim.Adam(ae, lr=cfg.lr, foreach=True)
        self.opt_p = torch.optim.Adam(p, lr=cfg.context_lr, fused=True) if cuda else torch.optim.Adam(p, lr=cfg.context_lr, foreach=True)
        self.weights = LossWeights(
            cfg.beta, cfg.distortion_scale, rate_loss=cfg.rate_loss,
            colour_weight=cfg.colour_weight, colour_pool=cfg.colour_pool,
        )
        loaded = time.perf_counter()
        self.crops = accelerate.DeviceCrops(cfg.data, cfg.crop, self.device, seed=cfg.seed)
        self.data_seconds = time.perf_counter() - loaded
        self.step = 0
        self.saves = 0
        self.status = "starting"

    # ------------------------------------------------------------------ budget
    def _check_output_budget(self) -> None:
        """Refuse before training a model whose export would not come back."""
        from imgcomp.weights_shards import split_state

        state = self.model.state_dict()
        shards = len(split_state(state, self.max_shard_bytes))
        weight_bytes = sum(t.numel() * t.element_size() for t in state.values())
        if self.max_shard_bytes > MAX_FILE_BYTES:
            raise ImgcompError(f"--max-shard-mib: at most {MAX_FILE_BYTES // 2**20} MiB per file comes back")
        if shards + RESERVED_FILES > MAX_FILES or weight_bytes + RESERVED_BYTES > MAX_TOTAL_BYTES:
            raise ImgcompError(
                f"the model's weights ({weight_bytes / 2**20:.1f} MiB in {shards} shards) do not fit the "
                f"{MAX_FILES} files / {MAX_TOTAL_BYTES // 2**20} MiB that come back"
            )
        self.weight_bytes, self.shards = weight_bytes, shards

    # ------------------------------------------------------------------ loop
    def _lr_factor(self, fraction: float) -> float:
        return 0.1 ** sum(1 for f in self.config.lr_decay_at if fraction >= f)

    def _set_lr(self, factor: float) -> None:
        for opt, base in ((self.opt_ae, self.config.lr), (self.opt_p, self.config.context_lr)):
            for group in opt.param_groups:
                group["lr"] = base * factor

    def run(self) -> dict[str, Any]:
        from imgcomp.systems.mentzer2018.objective import rate_distortion_loss
        from imgcomp.systems.mentzer2018.training import head_for_step

        cfg = self.config
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "metrics.jsonl").write_text("")
        heads = self.model.config.importance_heads
        targets = cfg.head_targets(heads)
        self.model.train()
        self.log(
            f"gpu_job: recipe {self.args.recipe}, preset {cfg.preset}, {heads} heads, batch {cfg.batch_size} x {cfg.crop}px, "
            f"device {self.device} ({self._device_name()}), amp {'bf16' if self.amp and self.device.type == 'cuda' else 'off'}, "
            f"{len(self.crops)} training crops ({self.crops.nbytes / 2**20:.0f} MiB on the device, loaded in {self.data_seconds:.1f} s), "
            f"{sum(p.numel() for p in self.model.parameters()) / 1e6:.2f} M parameters, budget {self.budget_s / 60:.1f} min"
            + (f" or {self.max_steps} steps" if self.max_steps else "")
        )
        self.started = time.perf_counter()
        last_save = self.started
        sums: dict[str, torch.Tensor] = {}
        count, window_start, window_step = 0, self.started, 0
        self.last: dict[str, Any] = {}
        self.status = "running"
        factor = None
        while True:
            elapsed = time.perf_counter() - self.started
            if elapsed >= self.budget_s or (self.max_steps is not None and self.step >= self.max_steps):
                break
            fraction = max(elapsed / self.budget_s, self.step / self.max_steps if self.max_steps else 0.0)
            if self._lr_factor(fraction) != factor:
                factor = self._lr_factor(fraction)
                self._set_lr(factor)
            head = head_for_step(cfg.seed, self.step, heads)
            x = self.crops.batch(cfg.batch_size)
            with accelerate.autocast(self.device, self.amp):
                out = self.model(x, head, rate_through_context=cfg.rate_through_context)
            terms = rate_distortion_loss(x, out, targets[head], self.weights, self.model.quantizer.regularization())
            self.opt_ae.zero_grad(set_to_none=True)
            self.opt_p.zero_grad(set_to_none=True)
            terms.total.backward()
            self.opt_ae.step()
            self.opt_p.step()
            self.step += 1
            for key, value in (("loss", terms.total.detach()), ("ms_ssim", terms.ms_ssim),
                               ("masked_bpp", terms.masked_bpp), ("bpp", terms.bpp)):
                sums[key] = sums.get(key, 0.0) + value.float()
            count += 1
            if self.step % self.log_every == 0 or self.step == self.max_steps:
                now = time.perf_counter()
                record = {k: float(v) / count for k, v in sums.items()}  # one device sync per window
                if not math.isfinite(record["loss"]):
                    self.status = f"diverged at step {self.step}; the weights of the last save are kept"
                    self.log(f"gpu_job: {self.status}")
                    self._write_job()
                    raise ImgcompError(f"training diverged at step {self.step} (loss {record['loss']})")
                record.update({
                    "step": self.step, "elapsed_s": round(now - self.started, 2), "lr": cfg.lr * factor,
                    "images_per_s": (self.step - window_step) * cfg.batch_size / max(now - window_start, 1e-9),
                })
                self._append_metrics(record)
                self.last = record
                self.log(
                    f"step {self.step}  loss {record['loss']:.3f}  bpp {record['masked_bpp']:.3f}  "
                    f"MS-SSIM {record['ms_ssim']:.4f}  {record['images_per_s']:.1f} images/s  {record['elapsed_s']:.0f} s"
                )
                sums, count, window_start, window_step = {}, 0, now, self.step
            every = self.args.checkpoint_steps
            if self.step == self.max_steps:
                break  # the final save follows
            if time.perf_counter() - last_save >= self.args.checkpoint_minutes * 60 or (every and self.step % every == 0):
                self.save()
                last_save = time.perf_counter()
        self.status = "finished"
        self.save()
        return self.summary()

    # ------------------------------------------------------------------ output
    def _device_name(self) -> str:
        if self.device.type == "cuda":
            return torch.cuda.get_device_name(self.device)
        return platform.processor() or platform.machine()

    def _append_metrics(self, record: dict[str, Any]) -> None:
        with open(self.out / "metrics.jsonl", "a") as handle:
            handle.write(json.dumps(record) + "\n")

    def summary(self) -> dict[str, Any]:
        elapsed = time.perf_counter() - self.started
        return {
            "status": self.status, "finished": self.status == "finished", "steps": self.step,
            "elapsed_s": round(elapsed, 2), "images": self.step * self.config.batch_size,
            "images_per_s": round(self.step * self.config.batch_size / max(elapsed, 1e-9), 2),
            "steps_per_s": round(self.step / max(elapsed, 1e-9), 3),
            "saves": self.saves, "recipe": self.args.recipe, "device": str(self.device),
            "device_name": self._device_name(), "amp": "bf16" if self.amp and self.device.type == "cuda" else None,
            "batch_size": self.config.batch_size, "crop": self.config.crop, "training_crops": len(self.crops),
            "weights_mib": round(self.weight_bytes / 2**20, 2), "shards": self.shards,
            "torch": torch.__version__, "python": platform.python_version(),
            "last_metrics": self.last,
        }

    def _write_job(self) -> None:
        from imgcomp.io import write_atomic

        text = json.dumps(self.summary(), indent=2) + "\n"
        write_atomic(self.out / "job.json", lambda handle: handle.write(text.encode()))

    def save(self) -> None:
        """The sharded export (usable as it is after a kill) and job.json."""
        from imgcomp.weights_shards import export_sharded

        metadata = {
            "trained_steps": self.step,
            "head_target_bpp": self.config.head_targets(self.model.config.importance_heads),
            "train_config": {**asdict(self.config), "steps": self.step},
            "gpu_job": {"minutes": self.args.minutes, "elapsed_s": round(time.perf_counter() - self.started, 1),
                        "finished": self.status == "finished", "device": self._device_name()},
        }
        export_sharded(self.model, self.out, metadata, self.max_shard_bytes)
        if self.status == "finished":  # the last save: P as integers too, so the model writes exact files at once
            from imgcomp.systems.mentzer2018.integer_context.build import build_for_training_data

            built = time.perf_counter()
            if build_for_training_data(self.out, self.config.data) is not None:
                self.log(f"gpu_job: integer context model built in {time.perf_counter() - built:.1f} s")
        self.saves += 1
        self._write_job()
        self.log(f"gpu_job: saved step {self.step} to {self.out}")


def main(argv: Sequence[str] | None = None, log=None) -> dict[str, Any]:
    args = _parser().parse_args(argv)
    log = log or (lambda message: print(message, flush=True))
    try:
        job = GpuJob(args, log)
        summary = job.run()
    except ImgcompError as exc:
        print(f"gpu_job: error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    scratch = Path(args.out) / ".smoke-data"
    if scratch.is_dir():  # not a file that should come back
        import shutil

        shutil.rmtree(scratch)
    files = sorted(p for p in Path(args.out).iterdir() if p.is_file())
    total = sum(p.stat().st_size for p in files)
    log(
        f"gpu_job: {summary['status']}: {summary['steps']} steps in {summary['elapsed_s']:.0f} s, "
        f"{summary['images_per_s']:.1f} images/s; {len(files)} files, {total / 2**20:.1f} MiB in {args.out}"
    )
    if len(files) > MAX_FILES or total > MAX_TOTAL_BYTES or any(p.stat().st_size > MAX_FILE_BYTES for p in files):
        log(f"gpu_job: WARNING: {args.out} exceeds what comes back ({MAX_FILES} files, 16 MiB each, 64 MiB)")
    return summary


if __name__ == "__main__":
    main()
