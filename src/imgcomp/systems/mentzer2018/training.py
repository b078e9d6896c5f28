"""Training Mentzer et al. 2018 (sec. 3.5): (E, D, Q) and P concurrently, with two optimisers.

One step: pick an importance head (multi-rate supplement: head ``i`` of ``n`` has target
``(i+1)/n * t``), run steps 1-6 of sec. 3.5, one backward pass, then both Adam optimisers step
(eqs. 20 and 21): ``ae`` for E, D, Q and ``p`` for P. Heads are pure functions of
``(seed, step)``. Partial runs train P alone (``context_only``), D alone (``decoder_only``) or E
alone (``encoder_only``) on a trained model. The loop itself (checkpoints, exact resume, DDP,
logging) is the shared :mod:`imgcomp.training.trainer`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from imgcomp.errors import ImgcompError
from imgcomp.metrics import ms_ssim, psnr
from imgcomp.models.export import LoadedModel, load_model
from imgcomp.postfilter.lowpass import LowpassSettings, correct
from imgcomp.systems.mentzer2018.config import CodecConfig, preset
from imgcomp.systems.mentzer2018.context_model import symbol_bits
from imgcomp.systems.mentzer2018.layers import kernel2_from_upconv
from imgcomp.systems.mentzer2018.model import ConditionalProbabilityCodec
from imgcomp.systems.mentzer2018.objective import LossWeights, coding_costs, distortion, rate_distortion_loss
from imgcomp.tensors import image_to_tensor, tensor_to_image
from imgcomp.training import trainer as loop
from imgcomp.training.batches import input_statistics
from imgcomp.training.checkpoint import CHECKPOINT_FILE
from imgcomp.training.trainer import (
    CONFIG_FILE, LoopConfig, adopt_stored_config, check_finite, choice_for_step, distortion_options,
)
from imgcomp.training.validation import RatePoint, bd_rates_vs_jpeg
from imgcomp.zoo import model_folder

__all__ = ["CONFIG_FILE", "MentzerTask", "TrainConfig", "Trainer", "head_for_step", "train"]


@dataclass
class TrainConfig(LoopConfig):
    """Everything that defines a training run (saved as ``train_config.json`` in the run folder):
    the loop's settings (:class:`~imgcomp.training.trainer.LoopConfig`) and this system's."""

    data: str = ""

    preset: str = "cpu"
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
    beta: float = 10.0
    distortion_scale: float = 100.0
    rate_loss: str = "two_sided"  # or "clip" (the paper's max(R, t)); see LossWeights
    colour_weight: float = 0.0  # colour anchor in the distortion (not in the paper); see LossWeights
    colour_pool: int = 1
    lowpass_block: int = 0  # train for the output with the low-pass layer of this block size (0: off)
    lowpass_step: int = 4
    rate_through_context: bool = True  # False: the rate reaches E only through the mask (model forward)
    # The distortion: "ms_ssim" (Mentzer et al.), "dpc" (Patel et al. 2019: DPL + lambda (1 - MS-SSIM))
    # or "dpl" (DPL alone), scaled by distortion_scale; see imgcomp.criteria.
    criterion: str = "ms_ssim"
    lpips_net: str = "alex"  # the DPL backbone: alex (ST-LPIPS AlexNet) or vgg (ST-LPIPS VGG-16)
    ms_ssim_weight: float = 1.0  # lambda of "dpc"

    def __post_init__(self) -> None:
        if self.rate_loss not in ("two_sided", "clip"):
            raise ImgcompError(f"rate_loss must be two_sided or clip, got {self.rate_loss!r}")
        distortion_options(self.crop, self.colour_weight, self.colour_pool, self.lowpass_block, self.lowpass_step)
        if self.criterion not in ("ms_ssim", "dpc", "dpl"):
            raise ImgcompError(f"criterion must be ms_ssim, dpc or dpl, got {self.criterion!r}")
        if self.lpips_net not in ("alex", "vgg"):
            raise ImgcompError(f"lpips_net must be alex or vgg, got {self.lpips_net!r}")
        if self.ms_ssim_weight < 0.0:
            raise ImgcompError(f"ms_ssim_weight must be >= 0, got {self.ms_ssim_weight}")
        if self.context_only + self.decoder_only + self.encoder_only > 1:
            raise ImgcompError("context_only, decoder_only and encoder_only exclude each other")

    @property
    def lowpass(self) -> LowpassSettings | None:
        return distortion_options(self.crop, self.colour_weight, self.colour_pool, self.lowpass_block, self.lowpass_step)

    def model_config(self, start: CodecConfig | None = None) -> CodecConfig:
        """The architecture to train; ``start`` is init_from's config if the caller has loaded it."""
        if self.init_from is not None:  # the starting model fixes the architecture, except P's width
            config = CodecConfig.from_dict((start or load_model(model_folder(self.init_from)).config).to_dict())
            if self.latent_channels is not None and self.latent_channels != config.latent_channels:
                if self.latent_channels < config.latent_channels:
                    raise ImgcompError(
                        f"latent_channels can only grow from init_from's {config.latent_channels} "
                        f"(got {self.latent_channels})"
                    )
                config.latent_channels = self.latent_channels  # widened by widen_latent
            if self.context_channels is not None:
                config.context_channels = self.context_channels
            if self.decoder_kernel is not None:  # Patel et al.'s k2/s2 decoder from a k5 one
                config.decoder_kernel = self.decoder_kernel
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


def widen_latent(
    source: dict[str, torch.Tensor], own: dict[str, torch.Tensor], old: int, new: int
) -> dict[str, torch.Tensor]:
    """A K-channel model's weights for a wider latent of ``new`` channels ("net2wider").

    The new channels come last, so the importance mask (eq. 14: channel ``k`` is on where
    ``y >= k + 1``) switches them on only where the map is above the old K: they add rate at the
    top of the map and nothing below it. E's new latent rows start as small random filters, D's
    first layer ignores them (zero weights), so D reconstructs the old channels exactly as before;
    P is a 3-D convolution over the channel axis and keeps its weights. The importance logits are
    shifted by ``-ln(new / old)`` so that ``y = new * sigmoid(logit)`` stays ``old * sigmoid(logit)``
    where the map is low (exact as ``sigmoid -> 0``).
    """
    encoder_keys = sorted((k for k in source if k.startswith("encoder.") and k.endswith(".weight")),
                          key=lambda k: int(k.split(".")[1]))
    last = encoder_keys[-1].rsplit(".", 1)[0]
    weight, bias = source[f"{last}.weight"], source[f"{last}.bias"]
    generator = torch.Generator().manual_seed(0)
    fresh = torch.randn((new - old, *weight.shape[1:]), generator=generator) * weight[:old].std() * 0.1
    shift = math.log(new / old)
    out = dict(source)
    out[f"{last}.weight"] = torch.cat([weight[:old], fresh.to(weight.dtype), weight[old:]])
    out[f"{last}.bias"] = torch.cat([bias[:old], torch.zeros(new - old, dtype=bias.dtype), bias[old:] - shift])
    first = next(k for k in own if k.startswith("decoder.") and k.endswith(".weight") and own[k].ndim == 4)
    d = source[first]  # ConvTranspose2d: (in = K, out, kh, kw)
    out[first] = torch.cat([d, torch.zeros((new - old, *d.shape[1:]), dtype=d.dtype)])
    return out


head_for_step = choice_for_step  # the importance head a step trains


class MentzerTask:
    """The model, its two optimisers and the steps of one run, for the shared loop."""

    def __init__(self, config: TrainConfig, run_dir: Path):
        self.config = config
        torch.manual_seed(config.seed)
        start = load_model(model_folder(config.init_from)) if config.init_from is not None else None
        model_config = config.model_config(start.config if start is not None else None)
        fresh = not (run_dir / CHECKPOINT_FILE).exists()
        if fresh and config.init_from is None:
            mean, std = input_statistics(config.data)
            model_config.input_mean, model_config.input_std = mean, std
        self.model = ConditionalProbabilityCodec(model_config)
        if fresh and start is not None:
            self._initialise_from(start)
        self.trained = self._trained_module()
        if self.trained is not self.model:
            for parameter in self.model.parameters():
                parameter.requires_grad_(False)
            for parameter in self.trained.parameters():
                parameter.requires_grad_(True)
        self.net: torch.nn.Module = self.model
        one_network = config.decoder_only or config.encoder_only
        ae_parameters = list(self.trained.parameters()) if one_network else self.model.autoencoder_parameters()
        self.optimisers = {
            "ae": torch.optim.Adam(ae_parameters, lr=config.lr, foreach=True),
            "p": torch.optim.Adam(self.model.context_parameters(), lr=config.context_lr, foreach=True),
        }
        self.logged_optimiser = "p" if config.context_only else "ae"
        self.weights = LossWeights(
            config.beta, config.distortion_scale, rate_loss=config.rate_loss,
            colour_weight=config.colour_weight, colour_pool=config.colour_pool, lowpass=config.lowpass,
            criterion=config.criterion, lpips_net=config.lpips_net, ms_ssim_weight=config.ms_ssim_weight,
        )
        self.criterion = None if config.context_only else self.weights.criterion_function()
        self.targets = config.head_targets(model_config.importance_heads)

    def _initialise_from(self, start: LoadedModel) -> None:
        """Start from an exported model's weights; P starts fresh if its shape changed (width or
        alphabet)."""
        source = start.model.state_dict()
        own = self.model.state_dict()
        if self.model.config.decoder_kernel == 2 and start.config.decoder_kernel != 2:
            source = {  # a kernel-2 decoder (Patel et al.) starts from the wide kernels, collapsed
                k: kernel2_from_upconv(v) if k.startswith("decoder.") and v.ndim == 4 and k in own
                and v.shape[-1] != 2 and own[k].shape[-1] == 2 else v
                for k, v in source.items()
            }
        if self.model.config.latent_channels != start.config.latent_channels:
            source = widen_latent(source, own, start.config.latent_channels, self.model.config.latent_channels)
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

    def trained_module(self) -> torch.nn.Module:
        # A frozen P or auto-encoder is not wrapped (DDP syncs the gradients of what it wraps).
        return self.trained if (self.config.context_only or self.config.decoder_only) else self.model

    def attach(self, net: torch.nn.Module) -> None:
        self.net = net

    def train_mode(self) -> None:
        """Training mode for the trained part; frozen parts' batch norms keep their statistics."""
        self.model.eval()
        self.trained.train()

    def adopt_checkpoint_config(self, stored: dict[str, Any]) -> None:
        adopt_stored_config(self.model.config, stored)  # the input statistics buffers come with the weights

    def export_metadata(self, step: int) -> dict[str, Any]:
        return {
            "trained_steps": step,
            "head_target_bpp": self.config.head_targets(self.model.config.importance_heads),
            "train_config": asdict(self.config),
        }

    def after_export(self, folder) -> None:
        """Build the exported model's integer P (``context-int.safetensors``), calibrated on a few
        training photos, so the export writes exact stream version 2 files (docs/integer_context.md)."""
        from imgcomp.systems.mentzer2018.integer_context.build import build_for_training_data

        build_for_training_data(folder, self.config.data)

    # ----------------------------------------------------------------- steps
    def step(self, x: torch.Tensor, step: int) -> tuple[dict[str, float], list[str]]:
        head = head_for_step(self.config.seed, step, self.model.config.importance_heads)
        if self.config.context_only:  # a frozen auto-encoder's optimiser and schedule never step
            return self._context_only_step(x, head, step), ["p"]
        if self.config.decoder_only:  # nor does a frozen P's
            return self._decoder_only_step(x, head, step), ["ae"]
        # with encoder_only, P's optimiser has no gradients and does nothing
        return self._joint_step(x, head, self.targets[head], step), ["ae", "p"]

    def _joint_step(self, x: torch.Tensor, head: int, target: float, step: int) -> dict[str, float]:
        """Steps 1-6 of sec. 3.5, one backward pass, then both optimisers (eqs. 20 and 21)."""
        out = self.net(x, head, rate_through_context=self.config.rate_through_context)
        terms = rate_distortion_loss(
            x, out, target, self.weights, self.model.quantizer.regularization(), self.criterion
        )
        check_finite(terms.total, step)
        for optimiser in self.optimisers.values():
            optimiser.zero_grad(set_to_none=True)
        terms.total.backward()
        self.optimisers["ae"].step()
        self.optimisers["p"].step()
        return {
            "loss": float(terms.total.detach()), "ms_ssim": float(terms.ms_ssim),
            "masked_bpp": float(terms.masked_bpp), "bpp": float(terms.bpp), "distortion": float(terms.distortion),
            f"bpp_head{head}": float(terms.masked_bpp),
        }

    def _context_only_step(self, x: torch.Tensor, head: int, step: int) -> dict[str, float]:
        """Eq. 21 alone: P learns the frozen encoder's symbols (in bits per pixel)."""
        with torch.no_grad():
            z, mask = self.model.encode_latent(x, head)
            symbols = self.model.context_symbols(self.model.quantize(z)[1], mask)
        logits = self.net(self.model.context_inputs(symbols))
        bpp, masked_bpp = coding_costs(symbol_bits(logits, symbols), mask, x.shape[-1] * x.shape[-2])
        check_finite(bpp, step)
        self.optimisers["p"].zero_grad(set_to_none=True)
        bpp.backward()
        self.optimisers["p"].step()
        return {
            "loss": float(bpp.detach()), "masked_bpp": float(masked_bpp),
            "bpp": float(bpp.detach()), f"bpp_head{head}": float(masked_bpp),
        }

    def _decoder_only_step(self, x: torch.Tensor, head: int, step: int) -> dict[str, float]:
        """The distortion term of eq. 20 alone, for D: the frozen encoder's latents, and so the
        bits, are init_from's; D learns to reconstruct better from them."""
        with torch.no_grad():
            z_hat, _ = self.model.quantize(self.model.encode_latent(x, head)[0])
        x_hat = self.model.decode_latent(z_hat, decoder=self.net)
        loss, value = distortion(
            x, x_hat, self.weights.distortion_scale, self.weights.colour_weight, self.weights.colour_pool,
            self.weights.lowpass, self.criterion,
        )
        check_finite(loss, step)
        self.optimisers["ae"].zero_grad(set_to_none=True)
        loss.backward()
        self.optimisers["ae"].step()
        value = float(value.detach())
        return {"loss": float(loss.detach()), "ms_ssim": value, f"ms_ssim_head{head}": value}

    # ----------------------------------------------------------------- validation
    def validate(self, images: list[np.ndarray], device: torch.device) -> dict[str, float]:
        """Estimated bpp (C / pixels, eq. 13), masked bpp (MC / pixels, eq. 19), MS-SSIM and PSNR per
        head; with ``lowpass_block``, MS-SSIM and PSNR of the corrected output and the layer's bpp;
        with several heads, the BD-rates of the heads' curves against JPEG 4:2:0
        (:mod:`imgcomp.training.validation`; bpp: estimated + low-pass layer)."""
        lowpass = self.config.lowpass
        results: dict[str, float] = {}
        points: list[list[RatePoint]] = [[] for _ in images]
        for head in range(self.model.config.importance_heads):
            bpps, masked_bpps, msssims, psnrs, lowpass_bpps = [], [], [], [], []
            for index, image in enumerate(images):
                x = torch.from_numpy(image).permute(2, 0, 1)[None].float().to(device)
                out = self.model(x, head)
                x_hat = out["x_hat"].clamp(0, 255).round()
                if lowpass is not None:  # as the codec does: fit on the uint8 output
                    corrected, bits = correct(image, tensor_to_image(x_hat.cpu()), lowpass)
                    lowpass_bpps.append(bits / (x.shape[-1] * x.shape[-2]))
                    x_hat = image_to_tensor(corrected).to(x.device)
                bpp, masked_bpp = coding_costs(out["bits"], out["mask"], x.shape[-1] * x.shape[-2])
                bpps.append(float(bpp))
                masked_bpps.append(float(masked_bpp))
                msssims.append(ms_ssim(x, x_hat, allow_fewer_scales=True))
                psnrs.append(psnr(x, x_hat))
                points[index].append(RatePoint(float(bpp) + (lowpass_bpps[-1] if lowpass_bpps else 0.0), msssims[-1], psnrs[-1]))
            results[f"val_bpp_head{head}"] = float(np.mean(bpps))
            results[f"val_masked_bpp_head{head}"] = float(np.mean(masked_bpps))
            results[f"val_ms_ssim_head{head}"] = float(np.mean(msssims))
            results[f"val_psnr_head{head}"] = float(np.mean(psnrs))
            if lowpass_bpps:
                results[f"val_lowpass_bpp_head{head}"] = float(np.mean(lowpass_bpps))
        if self.model.config.importance_heads > 1:
            results.update(bd_rates_vs_jpeg(images, points))
        return results


def Trainer(config: TrainConfig, run_dir: Path, progress: Callable[..., Any] | None = None) -> loop.Trainer:
    """The shared loop with this system's task."""
    return loop.Trainer(MentzerTask(config, run_dir), run_dir, progress)


def train(config: TrainConfig, run_dir: Path, resume: bool = False, progress=None) -> dict[str, Any]:
    """Train (or resume) a run; the model is exported to ``run_dir/model`` at every checkpoint."""
    return loop.train(MentzerTask(config, run_dir), run_dir, resume, progress)

