"""Training Rippel & Bourdev 2017: MS-SSIM distortion + adaptive codelength regularisation (sec. 3.2.4).

One step: pick a quality (a pure function of ``(seed, step)``), encode, quantise with that
quality's steps (straight-through), decode; loss = ``ms_ssim`` criterion + ``alpha_k`` x the ACR
penalty (:mod:`.acr`). The batch's symbols are then counted into the model's decayed bit counts,
the coding table is rebuilt from them, and the table's cost of the batch (what the coder would
spend, measured before the batch was counted) drives ``alpha_k`` towards the quality's target bpp
(:class:`~.acr.AcrController`). The counts, the table and the alphas are model buffers: they are
checkpointed (exact resume) and exported (the table is what the files are coded with).

With ``adversarial`` on (sec. 4, :mod:`.adversarial`), each step also runs the multiscale
discriminator on the randomly swapped (target, reconstruction) pairs, and the accuracy gate picks
one branch: train the discriminator on the detached pairs (the codec gets the reconstruction loss
only), or add the confusion loss to the codec's loss with the weight that balances its gradient
against the reconstruction loss's at the reconstruction (the discriminator frozen). The
discriminator, its optimiser (``d``) and the gate are checkpointed, never exported.
``init_from`` starts a run from an exported model's weights and buffers (table, counts, alphas).
The loop is :mod:`imgcomp.training.trainer`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from imgcomp.criteria import get_criterion
from imgcomp.errors import ImgcompError
from imgcomp.metrics import ms_ssim, psnr
from imgcomp.models.export import load_model
from imgcomp.postfilter.lowpass import LowpassSettings, correct_tensor
from imgcomp.systems.rippel2017 import adversarial, bit_context
from imgcomp.systems.rippel2017.acr import AcrController, codelength_penalty
from imgcomp.systems.rippel2017.config import ARCHITECTURE, RippelConfig, preset
from imgcomp.systems.rippel2017.model import RippelCodec
from imgcomp.tensors import image_to_tensor
from imgcomp.training import trainer as loop
from imgcomp.training.batches import input_statistics
from imgcomp.training.checkpoint import CHECKPOINT_FILE
from imgcomp.training.trainer import (
    CONFIG_FILE, LoopConfig, adopt_stored_config, check_finite, choice_for_step, distortion_options,
)
from imgcomp.zoo import model_folder

__all__ = ["CONFIG_FILE", "RippelTask", "TrainConfig", "Trainer", "quality_for_step", "train"]


@dataclass
class TrainConfig(LoopConfig):
    """A training run's settings (``train_config.json``): the loop's and this system's."""

    data: str = ""

    preset: str = "cpu"
    target_bpp: list[float] = field(default_factory=lambda: [0.1, 0.2, 0.35, 0.55, 0.8])  # one per quality
    lr: float = 1e-3
    distortion_scale: float = 100.0  # ms_ssim criterion: scale * (1 - MS-SSIM)
    alpha_start: float = 0.01
    acr_gain: float = 0.05  # AcrController gain
    alpha_max: float = 10.0  # AcrController's upper clamp: a quality that cannot reach its target stops here
    colour_weight: float = 0.0  # colour anchor in the distortion (not in the paper): scale * weight * mean |x - x_hat| / 255
    colour_pool: int = 1  # ... over colour_pool x colour_pool block means
    lowpass_block: int = 0  # train for the output with the low-pass layer of this block size added (0: off, the paper)
    lowpass_step: int = 4
    acr_warmup: int = 20  # steps before alpha moves (the counts must first describe the latents)
    count_decay: float = 0.98  # per step of a quality: its bit counts are multiplied by this
    init_from: Optional[str] = None  # an exported rippel2017 model (folder or shipped name): its weights and buffers start the run

    # Adversarial training (sec. 4); off by default.
    adversarial: bool = False
    adversarial_ratio: float = 0.1  # |confusion gradient| / |reconstruction gradient| at the reconstruction (ours; the paper gives none)
    d_channels: list[int] = field(default_factory=lambda: [16, 32, 48, 64, 64])  # discriminator stages
    d_lr: float = 1e-4
    d_accuracy_low: float = 0.8  # sec. 4.2's lower bound L
    d_accuracy_high: float = 0.95  # sec. 4.2's upper bound U
    d_accuracy_momentum: float = 0.8  # running average of the accuracy over mini-batches

    def __post_init__(self) -> None:
        if not self.target_bpp or sorted(self.target_bpp) != list(self.target_bpp) or min(self.target_bpp) <= 0:
            raise ImgcompError("target_bpp needs positive, increasing values (one per quality)")
        if self.alpha_max <= 0.0:
            raise ImgcompError("alpha_max must be > 0")
        distortion_options(self.crop, self.colour_weight, self.colour_pool, self.lowpass_block, self.lowpass_step)
        if not 0.0 < self.count_decay <= 1.0:
            raise ImgcompError("count_decay must be in (0, 1]")
        if not 0.0 <= self.d_accuracy_low <= self.d_accuracy_high <= 1.0:
            raise ImgcompError("need 0 <= d_accuracy_low <= d_accuracy_high <= 1")
        if not 0.0 <= self.d_accuracy_momentum < 1.0:
            raise ImgcompError("d_accuracy_momentum must be in [0, 1)")
        if self.adversarial_ratio <= 0.0 or self.d_lr <= 0.0 or not self.d_channels or min(self.d_channels) < 1:
            raise ImgcompError("adversarial_ratio and d_lr must be positive, d_channels at least one positive count")

    @property
    def lowpass(self) -> LowpassSettings | None:
        return distortion_options(self.crop, self.colour_weight, self.colour_pool, self.lowpass_block, self.lowpass_step)

    def model_config(self, start: RippelConfig | None = None) -> RippelConfig:
        """The architecture: the preset's, or ``init_from``'s (``start``, if the caller has loaded it);
        its ``lowpass``: the layer this run trains for (what encoders then use by default)."""
        if self.init_from is None:
            config = preset(self.preset, qualities=len(self.target_bpp))
        else:
            if start is None:
                start = load_model(model_folder(self.init_from)).config
            if getattr(start, "architecture", None) != ARCHITECTURE:
                raise ImgcompError(f"{self.init_from}: not a rippel2017 model")
            config = RippelConfig.from_dict(start.to_dict())
            if config.qualities != len(self.target_bpp):
                raise ImgcompError(
                    f"{self.init_from} has {config.qualities} qualities: give as many target_bpp values "
                    f"(got {len(self.target_bpp)})"
                )
        config.lowpass = [self.lowpass_block, self.lowpass_step] if self.lowpass_block else None
        return config


quality_for_step = choice_for_step  # the quality (0-based) a step trains


class RippelTask:
    """The model, its optimiser and the steps of one run, for the shared loop."""

    def __init__(self, config: TrainConfig, run_dir: Path):
        self.config = config
        torch.manual_seed(config.seed)
        fresh = not (run_dir / CHECKPOINT_FILE).exists()
        start = load_model(model_folder(config.init_from)) if config.init_from is not None else None
        model_config = config.model_config(start.config if start is not None else None)
        if fresh and start is None:
            model_config.input_mean, model_config.input_std = input_statistics(config.data)
        self.model = RippelCodec(model_config)
        self.model.acr_alpha.fill_(config.alpha_start)
        if fresh and start is not None:  # weights and buffers: the coding table, counts and alphas
            self.model.load_state_dict(start.model.state_dict())
        self.net: torch.nn.Module = self.model
        self.optimisers = {"ae": torch.optim.Adam(self.model.parameters(), lr=config.lr, foreach=True)}
        self.logged_optimiser = "ae"
        self.lowpass = config.lowpass
        self.ms_ssim_loss = get_criterion("ms_ssim", scale=config.distortion_scale)
        self.colour_loss = (
            get_criterion("colour", scale=config.distortion_scale * config.colour_weight, pool=config.colour_pool)
            if config.colour_weight > 0.0 else None
        )
        self.controllers = [
            AcrController(target, config.acr_gain, high=config.alpha_max) for target in config.target_bpp
        ]
        self.discriminator: adversarial.MultiscaleDiscriminator | None = None
        if config.adversarial:
            self.discriminator = adversarial.MultiscaleDiscriminator(list(config.d_channels))
            self.optimisers["d"] = torch.optim.Adam(
                self.discriminator.parameters(), lr=config.d_lr, betas=(0.5, 0.999), foreach=True
            )
            self.gate = adversarial.AccuracyGate(
                config.d_accuracy_low, config.d_accuracy_high, config.d_accuracy_momentum
            )

    def trained_module(self) -> torch.nn.Module:
        return self.model

    def attach(self, net: torch.nn.Module) -> None:
        self.net = net
        if self.discriminator is not None:
            self.discriminator.to(self.model.log2_step.device)

    def train_mode(self) -> None:
        self.model.train()

    def adopt_checkpoint_config(self, stored: dict[str, Any]) -> None:
        if adopt_stored_config(self.model.config, stored):
            self.model.set_input_statistics(stored["input_mean"], stored["input_std"])

    def extra_state(self) -> dict[str, Any]:
        """What the checkpoint holds beyond the codec: the discriminator and the gate (not exported)."""
        if self.discriminator is None:
            return {}
        return {"discriminator": self.discriminator.state_dict(), "gate": self.gate.state_dict()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if self.discriminator is not None:
            if "discriminator" not in state:
                raise ImgcompError("checkpoint has no discriminator: it was not an adversarial run")
            self.discriminator.load_state_dict(state["discriminator"])
            self.gate.load_state_dict(state["gate"])

    def export_metadata(self, step: int) -> dict[str, Any]:
        return {
            "trained_steps": step, "target_bpp": list(self.config.target_bpp),
            "acr_alpha": [float(a) for a in self.model.acr_alpha], "train_config": asdict(self.config),
        }

    def step(self, x: torch.Tensor, step: int) -> tuple[dict[str, float], list[str]]:
        quality = quality_for_step(self.config.seed, step, self.model.config.qualities)
        alpha = float(self.model.acr_alpha[quality])
        out = self.net(x, quality)
        x_hat = out["x_hat"]
        if self.lowpass is not None:  # what the decoder shows once the layer is added
            x_hat = correct_tensor(x, x_hat.clamp(0.0, 255.0), self.lowpass).clamp(0.0, 255.0)
        ms_ssim_term = self.ms_ssim_loss(x, x_hat)
        distortion = ms_ssim_term if self.colour_loss is None else ms_ssim_term + self.colour_loss(x, x_hat)
        penalty = codelength_penalty(out["q"])
        loss = distortion + alpha * penalty
        record: dict[str, float] = {}
        stepped = ["ae"]
        if self.discriminator is not None:
            loss, record, stepped = self._adversarial(x, x_hat, distortion, loss, step)
        check_finite(loss, step)
        self.optimisers["ae"].zero_grad(set_to_none=True)
        loss.backward()
        self.optimisers["ae"].step()
        bpp = self._count(out["q"].detach().round().to(torch.int64).cpu().numpy(), quality, x.shape[0] * x.shape[2] * x.shape[3])
        if step >= self.config.acr_warmup:
            self.model.acr_alpha[quality] = self.controllers[quality].update(alpha, bpp)
        return {
            "loss": float(loss.detach()), "distortion": float(distortion.detach()), "acr": float(penalty.detach()),
            "ms_ssim": 1.0 - float(ms_ssim_term.detach()) / self.config.distortion_scale,
            "bpp": bpp, f"bpp_q{quality + 1}": bpp, f"alpha_q{quality + 1}": alpha, **record,
        }, stepped

    def _adversarial(
        self, x: torch.Tensor, x_hat: torch.Tensor, distortion: torch.Tensor, loss: torch.Tensor, step: int
    ) -> tuple[torch.Tensor, dict[str, float], list[str]]:
        """Sec. 4: the gate's branch for this step. Training the discriminator happens here; the
        codec's loss is returned (with the balanced confusion loss added on the confusion branch)."""
        assert self.discriminator is not None
        if torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
            raise ImgcompError("adversarial training runs in one process (the discriminator is not synchronised)")
        generator = torch.Generator().manual_seed(self.config.seed * 1_000_003 + step + 7_777_777)
        branch = self.gate.choose()
        record: dict[str, float] = {"gan_d_step": float(branch == adversarial.TRAIN_D)}
        if branch == adversarial.TRAIN_D:
            first, second, label = adversarial.swap_pairs(x, x_hat.detach(), generator)
            logits = self.discriminator(first, second)
            d_loss = adversarial.discriminator_loss(logits, label)
            check_finite(d_loss, step)
            self.optimisers["d"].zero_grad(set_to_none=True)
            d_loss.backward()
            self.optimisers["d"].step()
            record["d_loss"] = float(d_loss.detach())
            stepped = ["ae", "d"]
        else:
            self.discriminator.requires_grad_(False)
            try:
                first, second, label = adversarial.swap_pairs(x, x_hat, generator)
                logits = self.discriminator(first, second)
                confusion = adversarial.confusion_loss(logits, label)
                weight = adversarial.balanced_weight(distortion, confusion, x_hat, self.config.adversarial_ratio)
            finally:
                self.discriminator.requires_grad_(True)
            loss = loss + weight * confusion
            record.update({"confusion": float(confusion.detach()), "adv_weight": weight})
            stepped = ["ae"]
        record["d_batch_accuracy"] = adversarial.accuracy(logits, label)
        record["d_accuracy"] = self.gate.update(record["d_batch_accuracy"])
        return loss, record, stepped

    def _count(self, symbols: np.ndarray, quality: int, pixels: int) -> float:
        """The table's bpp for the batch (before counting it), then count it and rebuild the table."""
        config = self.model.config
        table = self.model.context_table.numpy().astype(np.int64)
        bpp = bit_context.symbols_bits(config, table, symbols, quality) / pixels
        counts = self.model.context_counts.numpy().astype(np.float64)
        span = slice(quality * bit_context.per_quality(config), (quality + 1) * bit_context.per_quality(config))
        counts[span] *= self.config.count_decay
        counts += bit_context.count(config, symbols, quality)
        self.model.context_counts.copy_(torch.from_numpy(counts))
        self.model.context_table.copy_(torch.from_numpy(bit_context.table_from_counts(config, counts)))
        return bpp

    def validate(self, images: list[np.ndarray], device: torch.device) -> dict[str, float]:
        """Per quality: the table's bpp, MS-SSIM and PSNR on the validation images (padded as the codec does)."""
        from imgcomp.systems.rippel2017 import stream

        config = self.model.config
        table = self.model.context_table.cpu().numpy().astype(np.int64)
        results: dict[str, float] = {}
        for quality in range(1, config.qualities + 1):
            bpps, msssims, psnrs = [], [], []
            for image in images:
                symbols = stream.image_symbols(self.model, image, quality)
                reconstruction = stream.reconstruct(self.model, symbols, quality, *image.shape[:2])
                bpps.append(bit_context.symbols_bits(config, table, symbols[None], quality - 1) / (image.shape[0] * image.shape[1]))
                a, b = image_to_tensor(image), image_to_tensor(reconstruction)
                msssims.append(ms_ssim(a, b, allow_fewer_scales=True))
                psnrs.append(psnr(a, b))
            results[f"val_bpp_q{quality}"] = float(np.mean(bpps))
            results[f"val_ms_ssim_q{quality}"] = float(np.mean(msssims))
            results[f"val_psnr_q{quality}"] = float(np.mean(psnrs))
        return results


def Trainer(config: TrainConfig, run_dir: Path, progress: Callable[..., Any] | None = None) -> loop.Trainer:
    return loop.Trainer(RippelTask(config, run_dir), run_dir, progress)


def train(config: TrainConfig, run_dir: Path, resume: bool = False, progress=None) -> dict[str, Any]:
    """Train (or resume) a run; the model is exported to ``run_dir/model`` at every checkpoint."""
    return loop.train(RippelTask(config, run_dir), run_dir, resume, progress)
