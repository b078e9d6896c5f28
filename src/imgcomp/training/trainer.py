"""Concurrent training of (E, D, Q) and P (Mentzer et al. 2018, sec. 3.5), single- or multi-process.

One step: pick an importance head (multi-rate supplement: head ``i`` of ``n`` has target
``(i+1)/n * t``), run steps 1-6 of sec. 3.5, one backward pass, then both Adam optimisers step
(eqs. 20 and 21). Batches and heads are pure functions of ``(seed, step)``, so ``--resume``
continues exactly where an uninterrupted run would have been. Under ``torchrun`` the model is
wrapped in DistributedDataParallel (gloo on CPU, nccl on GPU) and each rank takes its own slice of
every step's batch.
"""

from __future__ import annotations

import json
import math
import random
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from imgcomp.errors import ImgcompError
from imgcomp.entropy import SymbolEncoder
from imgcomp.postfilter.lowpass import LowpassSettings, apply_offsets, encode_offsets, fit_offsets
from imgcomp.metrics import ms_ssim, psnr
from imgcomp.models import ConditionalProbabilityCodec, create_model, preset
from imgcomp.systems.mentzer2018.context_model import symbol_bits
from imgcomp.models.export import LoadedModel, export_model, load_model
from imgcomp.systems.mentzer2018.model import CodecConfig
from imgcomp.tensors import image_to_tensor, tensor_to_image
from imgcomp.training import distributed
from imgcomp.training.batches import StepBatches, input_statistics, load_validation_images
from imgcomp.training.checkpoint import (
    CHECKPOINT_FILE,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from imgcomp.systems.mentzer2018.objective import LossWeights, coding_costs, distortion, rate_distortion_loss
from imgcomp.zoo import model_folder

CONFIG_FILE = "train_config.json"
METRICS_FILE = "metrics.jsonl"
MODEL_DIR = "model"


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved as ``train_config.json`` in the run folder)."""

    data: str
    preset: str = "cpu"
    steps: int = 2000
    batch_size: int = 8
    crop: int = 128
    target_bpp: float = 0.4  # the highest head's target; head i of n gets (i+1)/n of it
    heads: Optional[int] = None  # importance-map heads (multi-rate); preset's value if None
    head_target_bpp: Optional[list[float]] = None  # explicit per-head targets instead of i/n * t
    latent_channels: Optional[int] = None
    decoder_kernel: Optional[int] = None
    context_channels: Optional[int] = None  # hidden channels of P (the preset's 24 if None)
    importance_pool: Optional[int] = None  # importance map averaged over NxN latent positions (preset's if None)
    mask_symbol: Optional[bool] = None  # P codes masked-out positions as their own symbol (preset's if None)
    init_from: Optional[str] = None  # an exported model (folder or shipped name) whose E, D, Q (and P, if it fits) start the run
    context_only: bool = False  # train P alone (eq. 21) on the frozen E, D, Q of init_from
    decoder_only: bool = False  # train D alone for the distortion; E, Q, P (so every bitstream) stay as init_from's
    encoder_only: bool = False  # train E alone (eq. 20) for init_from's frozen D, Q and P
    lr: float = 1e-3  # Adam, E/D/Q
    context_lr: float = 1e-3  # Adam, P
    lr_decay_at: list[float] = field(default_factory=lambda: [0.75, 0.9])  # fractions of steps; x0.1
    beta: float = 10.0
    distortion_scale: float = 100.0
    rate_loss: str = "two_sided"  # or "clip" (the paper's max(R, t)); see LossWeights
    colour_weight: float = 0.0  # colour anchor in the distortion (not in the paper); see LossWeights
    colour_pool: int = 1
    lowpass_block: int = 0  # train for the output with the low-pass layer of this block size (0: off)
    lowpass_step: int = 4
    rate_through_context: bool = True  # False: the rate reaches E only through the mask (model forward)
    val_data: Optional[str] = None
    val_every: int = 500
    val_images: Optional[int] = None  # the first N validation images; None: all of them
    checkpoint_every: int = 200
    log_every: int = 10
    seed: int = 0
    workers: int = 1

    def __post_init__(self) -> None:
        if self.rate_loss not in ("two_sided", "clip"):
            raise ImgcompError(f"rate_loss must be two_sided or clip, got {self.rate_loss!r}")
        if self.colour_weight < 0.0 or self.colour_pool < 1:
            raise ImgcompError("colour_weight must be >= 0 and colour_pool >= 1")
        if self.colour_pool > 1 and self.crop % self.colour_pool:
            raise ImgcompError(f"crop {self.crop} is not a multiple of colour_pool {self.colour_pool}")
        if self.lowpass_block:
            LowpassSettings(self.lowpass_block, self.lowpass_step)  # raises on bad values
            if self.crop % self.lowpass_block:
                raise ImgcompError(f"crop {self.crop} is not a multiple of lowpass_block {self.lowpass_block}")
        if self.context_only + self.decoder_only + self.encoder_only > 1:
            raise ImgcompError("context_only, decoder_only and encoder_only exclude each other")

    @property
    def lowpass(self) -> LowpassSettings | None:
        return LowpassSettings(self.lowpass_block, self.lowpass_step) if self.lowpass_block else None

    def model_config(self, start: CodecConfig | None = None) -> CodecConfig:
        """The architecture to train; ``start`` is init_from's config if the caller has loaded it."""
        if self.init_from is not None:  # the starting model fixes the architecture, except P's width
            config = CodecConfig.from_dict((start or load_model(model_folder(self.init_from)).config).to_dict())
            if self.context_channels is not None:
                config.context_channels = self.context_channels
            if self.mask_symbol is not None:
                config.mask_symbol = self.mask_symbol
            if (self.decoder_only or self.encoder_only) and config.to_dict() != (start or load_model(model_folder(self.init_from)).config).to_dict():
                raise ImgcompError("decoder_only and encoder_only keep init_from's P: do not change its settings")
            return config
        if self.context_only:
            raise ImgcompError("context_only trains P on a trained E, D, Q: give init_from (--init-from MODEL)")
        if self.decoder_only or self.encoder_only:
            raise ImgcompError("decoder_only and encoder_only train part of a trained model: give init_from (--init-from MODEL)")
        return preset(
            self.preset,
            importance_heads=self.heads,
            latent_channels=self.latent_channels,
            decoder_kernel=self.decoder_kernel,
            context_channels=self.context_channels,
            mask_symbol=self.mask_symbol,
            importance_pool=self.importance_pool,
        )

    def head_targets(self, heads: int) -> list[float]:
        """Target rate of every head: ``(i+1)/n * t`` (supplement), or the explicit list."""
        if self.head_target_bpp is not None:
            if len(self.head_target_bpp) != heads or sorted(self.head_target_bpp) != list(self.head_target_bpp):
                raise ImgcompError(f"head_target_bpp needs {heads} increasing values")
            return list(self.head_target_bpp)
        return [self.target_bpp * (i + 1) / heads for i in range(heads)]


def head_for_step(seed: int, step: int, heads: int) -> int:
    """The importance head trained at ``step`` (random, but a pure function of seed and step)."""
    return random.Random(seed * 1_000_003 + step).randrange(heads)


class Trainer:
    """Runs, checkpoints, validates and exports one training run in ``run_dir``."""

    def __init__(self, config: TrainConfig, run_dir: Path, progress: Callable[..., Any] | None = None):
        self.config = config
        self.run_dir = run_dir
        self.progress = progress
        self.dist = distributed.setup()
        torch.manual_seed(config.seed)
        start = load_model(model_folder(config.init_from)) if config.init_from is not None else None
        model_config = config.model_config(start.config if start is not None else None)
        fresh = not (run_dir / CHECKPOINT_FILE).exists()
        if fresh and config.init_from is None:
            mean, std = input_statistics(config.data)
            model_config.input_mean, model_config.input_std = mean, std
        self.model: ConditionalProbabilityCodec = create_model(model_config.architecture, model_config)
        if fresh and start is not None:
            self._initialise_from(start)
        self.trained = self._trained_module()
        if self.trained is not self.model:
            for parameter in self.model.parameters():
                parameter.requires_grad_(False)
            for parameter in self.trained.parameters():
                parameter.requires_grad_(True)
        self.model.to(self.dist.device)
        # A frozen P or auto-encoder is not wrapped (DDP syncs the gradients of what it wraps).
        wrapped = self.trained if (config.context_only or config.decoder_only) else self.model
        self.ddp_model = distributed.wrap(wrapped, self.dist)
        one_network = config.decoder_only or config.encoder_only
        ae_parameters = list(self.trained.parameters()) if one_network else self.model.autoencoder_parameters()
        self.opt_ae = torch.optim.Adam(ae_parameters, lr=config.lr, foreach=True)
        self.opt_p = torch.optim.Adam(self.model.context_parameters(), lr=config.context_lr, foreach=True)
        milestones = [int(f * config.steps) for f in config.lr_decay_at]
        self.sched_ae = torch.optim.lr_scheduler.MultiStepLR(self.opt_ae, milestones, 0.1)
        self.sched_p = torch.optim.lr_scheduler.MultiStepLR(self.opt_p, milestones, 0.1)
        self.weights = LossWeights(
            config.beta, config.distortion_scale, rate_loss=config.rate_loss,
            colour_weight=config.colour_weight, colour_pool=config.colour_pool, lowpass=config.lowpass,
        )
        self.step = 0
        self._stop_requested = False
        self._writer = None
        self._val_images: list[np.ndarray] | None = None  # decoded once, on first validation

    def _initialise_from(self, start: LoadedModel) -> None:
        """Start from an exported model's weights; P starts fresh if its shape changed (width or
        alphabet)."""
        source = start.model.state_dict()
        own = self.model.state_dict()
        kept = {k: v for k, v in source.items() if k in own and own[k].shape == v.shape}
        if any(k.startswith("context_model.") and k not in kept for k in own):
            kept = {k: v for k, v in kept.items() if not k.startswith("context_model.")}
        missing = sorted(k for k in own if k not in kept)
        if any(not k.startswith("context_model.") for k in missing):
            raise ImgcompError(f"{start.path}: its auto-encoder does not fit this run's model ({missing[0]})")
        self.model.load_state_dict(kept, strict=False)

    def _trained_module(self) -> torch.nn.Module:
        """What this run trains: all of E, D, Q, P; or only P, D or E (context_, decoder_, encoder_only)."""
        if self.config.context_only:
            return self.model.context_model
        if self.config.decoder_only:
            return self.model.decoder
        if self.config.encoder_only:
            return self.model.encoder
        return self.model

    def _train_mode(self) -> None:
        """Training mode for the trained part; frozen parts' batch norms keep their statistics."""
        self.model.eval()
        self.trained.train()

    def _context_only_terms(self, x: torch.Tensor, head: int) -> dict[str, torch.Tensor]:
        """P's coding cost (eq. 21) of the frozen encoder's symbols, in bits per pixel."""
        with torch.no_grad():
            z, mask = self.model.encode_latent(x, head)
            symbols = self.model.context_symbols(self.model.quantize(z)[1], mask)
        logits = self.ddp_model(self.model.context_inputs(symbols))
        bpp, masked_bpp = coding_costs(symbol_bits(logits, symbols), mask, x.shape[-1] * x.shape[-2])
        return {"total": bpp, "bpp": bpp.detach(), "masked_bpp": masked_bpp}

    def _decoder_only_step(self, x: torch.Tensor, head: int, step: int) -> dict[str, float]:
        """The distortion term of eq. 20 alone, for D: the frozen encoder's latents, and so the
        bits, are init_from's; D learns to reconstruct better from them."""
        with torch.no_grad():
            z_hat, _ = self.model.quantize(self.model.encode_latent(x, head)[0])
        x_hat = self.ddp_model(z_hat) * self.model.input_std + self.model.input_mean  # decode_latent
        loss, value = distortion(
            x, x_hat, self.weights.distortion_scale, self.weights.colour_weight, self.weights.colour_pool,
            self.weights.lowpass,
        )
        self._check_finite(loss, step)
        self.opt_ae.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_ae.step()
        value = float(value.detach())
        return {"loss": float(loss.detach()), "ms_ssim": value, f"ms_ssim_head{head}": value}

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "model_config": self.model.config.to_dict(),
            "opt_ae": self.opt_ae.state_dict(),
            "opt_p": self.opt_p.state_dict(),
            "sched_ae": self.sched_ae.state_dict(),
            "sched_p": self.sched_p.state_dict(),
            "step": self.step,
            "rng": rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["model_config"] != self.model.config.to_dict():
            # Input statistics come from the checkpoint; everything else must agree.
            self.model.config.input_mean = state["model_config"]["input_mean"]
            self.model.config.input_std = state["model_config"]["input_std"]
            if state["model_config"] != self.model.config.to_dict():
                raise ImgcompError("checkpoint was trained with a different model configuration")
        self.model.load_state_dict(state["model"])
        self.opt_ae.load_state_dict(state["opt_ae"])
        self.opt_p.load_state_dict(state["opt_p"])
        self.sched_ae.load_state_dict(state["sched_ae"])
        self.sched_p.load_state_dict(state["sched_p"])
        self.step = state["step"]
        set_rng_state(state["rng"])
        self._reschedule()

    def _reschedule(self) -> None:
        """Apply this run's (possibly changed) ``steps`` to the decay milestones after a resume."""
        from collections import Counter

        milestones = [int(f * self.config.steps) for f in self.config.lr_decay_at]
        for scheduler in (self.sched_ae, self.sched_p):
            scheduler.milestones = Counter(milestones)
            passed = sum(1 for m in milestones if m <= scheduler.last_epoch)
            for group, base in zip(scheduler.optimizer.param_groups, scheduler.base_lrs):
                group["lr"] = base * scheduler.gamma**passed

    def resume(self) -> None:
        self.load_state_dict(load_checkpoint(self.run_dir / CHECKPOINT_FILE))

    def save(self) -> None:
        if not self.dist.is_main:
            return
        save_checkpoint(self.run_dir / CHECKPOINT_FILE, self.state_dict())
        export_model(self.model, self.run_dir / MODEL_DIR, self.export_metadata(), force=True)

    def export_metadata(self) -> dict[str, Any]:
        heads = self.model.config.importance_heads
        return {
            "trained_steps": self.step,
            "head_target_bpp": self.config.head_targets(heads),
            "train_config": asdict(self.config),
        }

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
        heads = self.model.config.importance_heads
        targets = cfg.head_targets(heads)
        batches = StepBatches(
            cfg.data, cfg.crop, cfg.batch_size, cfg.seed, cfg.workers,
            rank=self.dist.rank, world_size=self.dist.world_size,
        )
        last: dict[str, Any] = {}
        window: list[dict[str, float]] = []
        started = time.perf_counter()
        first_step = self.step
        try:
            self._train_mode()
            for step, x in batches.iterate(self.step, cfg.steps):
                head = head_for_step(cfg.seed, step, heads)
                x = x.to(self.dist.device, non_blocking=True)
                if cfg.context_only:  # a frozen auto-encoder's optimiser and schedule never step
                    record = self._context_only_step(x, head, step)
                    self.sched_p.step()
                elif cfg.decoder_only:  # nor does a frozen P's
                    record = self._decoder_only_step(x, head, step)
                    self.sched_ae.step()
                else:  # with encoder_only, P's optimiser has no gradients and does nothing
                    record = self._joint_step(x, head, targets[head], step)
                    self.sched_ae.step()
                    self.sched_p.step()
                self.step = step + 1
                window.append(record)
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    elapsed = time.perf_counter() - started
                    last = self._log(window, elapsed, self.step - first_step)
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
        return last

    def _joint_step(self, x: torch.Tensor, head: int, target: float, step: int) -> dict[str, float]:
        """Steps 1-6 of sec. 3.5, one backward pass, then both optimisers (eqs. 20 and 21)."""
        out = self.ddp_model(x, head, rate_through_context=self.config.rate_through_context)
        terms = rate_distortion_loss(x, out, target, self.weights, self.model.quantizer.regularization())
        self._check_finite(terms.total, step)
        self.opt_ae.zero_grad(set_to_none=True)
        self.opt_p.zero_grad(set_to_none=True)
        terms.total.backward()
        self.opt_ae.step()
        self.opt_p.step()
        return {
            "loss": float(terms.total.detach()), "ms_ssim": float(terms.ms_ssim),
            "masked_bpp": float(terms.masked_bpp), "bpp": float(terms.bpp),
            f"bpp_head{head}": float(terms.masked_bpp),
        }

    def _context_only_step(self, x: torch.Tensor, head: int, step: int) -> dict[str, float]:
        """Eq. 21 alone: P learns the frozen encoder's symbols."""
        terms = self._context_only_terms(x, head)
        self._check_finite(terms["total"], step)
        self.opt_p.zero_grad(set_to_none=True)
        terms["total"].backward()
        self.opt_p.step()
        return {
            "loss": float(terms["total"].detach()), "masked_bpp": float(terms["masked_bpp"]),
            "bpp": float(terms["bpp"]), f"bpp_head{head}": float(terms["masked_bpp"]),
        }

    @staticmethod
    def _check_finite(loss: torch.Tensor, step: int) -> None:
        if not torch.isfinite(loss):
            raise ImgcompError(f"training diverged at step {step} (loss {loss})")

    def _log(self, window: list[dict[str, float]], elapsed: float, steps_done: int) -> dict[str, Any]:
        keys = {k for record in window for k in record}
        summary: dict[str, Any] = {
            k: float(np.mean([r[k] for r in window if k in r])) for k in sorted(keys)
        }
        summary["steps_per_s"] = steps_done / max(elapsed, 1e-9)
        summary["images_per_s"] = summary["steps_per_s"] * self.config.batch_size
        summary["lr"] = (self.sched_p if self.config.context_only else self.sched_ae).get_last_lr()[0]
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

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Estimated bpp (C / pixels, eq. 13), masked bpp (MC / pixels, eq. 19), MS-SSIM and PSNR per
        head on the validation images; with ``lowpass_block``, MS-SSIM and PSNR of the corrected
        output and the layer's own bpp."""
        self.model.eval()
        if self._val_images is None:
            self._val_images = load_validation_images(self.config.val_data, self.config.val_images)
        images = self._val_images
        results: dict[str, float] = {}
        for head in range(self.model.config.importance_heads):
            bpps, masked_bpps, msssims, psnrs, lowpass_bpps = [], [], [], [], []
            for image in images:
                x = torch.from_numpy(image).permute(2, 0, 1)[None].float().to(self.dist.device)
                out = self.model(x, head)
                x_hat = out["x_hat"].clamp(0, 255).round()
                if self.config.lowpass is not None:  # as the codec does: fit on the uint8 output
                    decoded = tensor_to_image(x_hat.cpu())
                    offsets = fit_offsets(image, decoded, self.config.lowpass)
                    lowpass_bits = encode_offsets(SymbolEncoder(), offsets, self.config.lowpass)
                    lowpass_bpps.append(lowpass_bits / (x.shape[-1] * x.shape[-2]))
                    x_hat = image_to_tensor(apply_offsets(decoded, offsets, self.config.lowpass)).to(x.device)
                bpp, masked_bpp = coding_costs(out["bits"], out["mask"], x.shape[-1] * x.shape[-2])
                bpps.append(float(bpp))
                masked_bpps.append(float(masked_bpp))
                msssims.append(ms_ssim(x, x_hat, allow_fewer_scales=True))
                psnrs.append(psnr(x, x_hat))
            results[f"val_bpp_head{head}"] = float(np.mean(bpps))
            results[f"val_masked_bpp_head{head}"] = float(np.mean(masked_bpps))
            results[f"val_ms_ssim_head{head}"] = float(np.mean(msssims))
            results[f"val_psnr_head{head}"] = float(np.mean(psnrs))
            if lowpass_bpps:
                results[f"val_lowpass_bpp_head{head}"] = float(np.mean(lowpass_bpps))
        self._train_mode()
        return results


def train(config: TrainConfig, run_dir: Path, resume: bool = False, progress=None) -> dict[str, Any]:
    """Train (or resume) a run; the model is exported to ``run_dir/model`` at every checkpoint."""
    trainer = Trainer(config, run_dir, progress)
    try:
        if resume:
            trainer.resume()
        return trainer.run()
    finally:
        distributed.teardown(trainer.dist)
