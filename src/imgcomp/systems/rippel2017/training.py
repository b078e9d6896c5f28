"""Training Rippel & Bourdev 2017: MS-SSIM distortion + adaptive codelength regularisation (sec. 3.2.4).

One step: pick a quality (a pure function of ``(seed, step)``), encode, quantise with that
quality's steps (straight-through), decode; loss = ``ms_ssim`` criterion + ``alpha_k`` x the ACR
penalty (:mod:`.acr`). The batch's symbols are then counted into the model's decayed bit counts,
the coding table is rebuilt from them, and the table's cost of the batch (what the coder would
spend, measured before the batch was counted) drives ``alpha_k`` towards the quality's target bpp
(:class:`~.acr.AcrController`). The counts, the table and the alphas are model buffers: they are
checkpointed (exact resume) and exported (the table is what the files are coded with).
Not implemented: the adversarial training of sec. 4. The loop is :mod:`imgcomp.training.trainer`.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from imgcomp.criteria import get_criterion
from imgcomp.errors import ImgcompError
from imgcomp.metrics import ms_ssim, psnr
from imgcomp.systems.rippel2017 import bit_context
from imgcomp.systems.rippel2017.acr import AcrController, codelength_penalty
from imgcomp.systems.rippel2017.config import preset
from imgcomp.systems.rippel2017.model import RippelCodec
from imgcomp.tensors import image_to_tensor
from imgcomp.training import trainer as loop
from imgcomp.training.batches import input_statistics
from imgcomp.training.checkpoint import CHECKPOINT_FILE
from imgcomp.training.trainer import CONFIG_FILE, LoopConfig, check_finite

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
    acr_warmup: int = 20  # steps before alpha moves (the counts must first describe the latents)
    count_decay: float = 0.98  # per step of a quality: its bit counts are multiplied by this

    def __post_init__(self) -> None:
        if not self.target_bpp or sorted(self.target_bpp) != list(self.target_bpp) or min(self.target_bpp) <= 0:
            raise ImgcompError("target_bpp needs positive, increasing values (one per quality)")
        if not 0.0 < self.count_decay <= 1.0:
            raise ImgcompError("count_decay must be in (0, 1]")

    def model_config(self):
        return preset(self.preset, qualities=len(self.target_bpp))


def quality_for_step(seed: int, step: int, qualities: int) -> int:
    """The quality (0-based) trained at ``step``: random, a pure function of seed and step."""
    return random.Random(seed * 1_000_003 + step).randrange(qualities)


class RippelTask:
    """The model, its optimiser and the steps of one run, for the shared loop."""

    def __init__(self, config: TrainConfig, run_dir: Path):
        self.config = config
        torch.manual_seed(config.seed)
        model_config = config.model_config()
        if not (run_dir / CHECKPOINT_FILE).exists():
            model_config.input_mean, model_config.input_std = input_statistics(config.data)
        self.model = RippelCodec(model_config)
        self.model.acr_alpha.fill_(config.alpha_start)
        self.net: torch.nn.Module = self.model
        self.optimisers = {"ae": torch.optim.Adam(self.model.parameters(), lr=config.lr, foreach=True)}
        self.logged_optimiser = "ae"
        self.distortion = get_criterion("ms_ssim", scale=config.distortion_scale)
        self.controllers = [AcrController(target, config.acr_gain) for target in config.target_bpp]

    def trained_module(self) -> torch.nn.Module:
        return self.model

    def attach(self, net: torch.nn.Module) -> None:
        self.net = net

    def train_mode(self) -> None:
        self.model.train()

    def adopt_checkpoint_config(self, stored: dict[str, Any]) -> None:
        if stored != self.model.config.to_dict():
            self.model.config.input_mean = stored["input_mean"]
            self.model.config.input_std = stored["input_std"]
            if stored != self.model.config.to_dict():
                raise ImgcompError("checkpoint was trained with a different model configuration")
            self.model.set_input_statistics(stored["input_mean"], stored["input_std"])

    def export_metadata(self, step: int) -> dict[str, Any]:
        return {
            "trained_steps": step, "target_bpp": list(self.config.target_bpp),
            "acr_alpha": [float(a) for a in self.model.acr_alpha], "train_config": asdict(self.config),
        }

    def step(self, x: torch.Tensor, step: int) -> tuple[dict[str, float], list[str]]:
        quality = quality_for_step(self.config.seed, step, self.model.config.qualities)
        alpha = float(self.model.acr_alpha[quality])
        out = self.net(x, quality)
        distortion = self.distortion(x, out["x_hat"])
        penalty = codelength_penalty(out["q"])
        loss = distortion + alpha * penalty
        check_finite(loss, step)
        self.optimisers["ae"].zero_grad(set_to_none=True)
        loss.backward()
        self.optimisers["ae"].step()
        bpp = self._count(out["q"].detach().round().to(torch.int64).cpu().numpy(), quality, x.shape[0] * x.shape[2] * x.shape[3])
        if step >= self.config.acr_warmup:
            self.model.acr_alpha[quality] = self.controllers[quality].update(alpha, bpp)
        return {
            "loss": float(loss.detach()), "distortion": float(distortion.detach()), "acr": float(penalty.detach()),
            "ms_ssim": 1.0 - float(distortion.detach()) / self.config.distortion_scale,
            "bpp": bpp, f"bpp_q{quality + 1}": bpp, f"alpha_q{quality + 1}": alpha,
        }, ["ae"]

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
