"""Conditional probability models for deep image compression (Mentzer et al., CVPR 2018).

The auto-encoder of Fig. 2 with an importance map (sec. 3.4), the learned-center quantizer
(sec. 3.1) and the 3-D masked-CNN context model (sec. 3.2). Several importance-map heads give one
network several rates (supplement, "Multiple compression rates"); Patel et al.'s perceptual
variant only changes the decoder's upsampling (``decoder_kernel=2``) and the loss.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from imgcomp.errors import ImgcompError
from imgcomp.models.context_model import ContextModel3D, symbol_bits
from imgcomp.models.importance_map import binarize_mask, importance_mask
from imgcomp.models.layers import ResidualBody, conv_bn_relu, upconv
from imgcomp.models.quantizer import LearnedCenterQuantizer
from imgcomp.models.registry import register_architecture

ARCHITECTURE = "mentzer2018"
DOWNSAMPLING = 8  # three stride-2 convolutions


@dataclass
class CodecConfig:
    """Everything needed to rebuild a model; stored as JSON beside the weights."""

    architecture: str = ARCHITECTURE
    channels: int = 128  # n in Fig. 2
    residual_groups: int = 5
    blocks_per_group: int = 3
    batch_norm: bool = True
    latent_channels: int = 32  # K
    num_centers: int = 6  # L
    importance_heads: int = 1
    context_channels: int = 24
    decoder_kernel: int = 5  # 2 for Patel et al.'s checkerboard-free upsampling
    # P codes positions the importance mask switched off as one extra symbol (index L, value
    # Q(0)) instead of as Q(0) itself, so it sees where the mask ends (see ``context_symbols``).
    mask_symbol: bool = False
    # Importance map averaged over importance_pool x importance_pool latent positions (1: the
    # paper's per-position map). Coarser maps have fewer mask edges for P to code (eq. 13 vs 19).
    importance_pool: int = 1
    # Fixed input normalisation (per RGB channel, on the 0-255 scale), set from training data.
    input_mean: list[float] = field(default_factory=lambda: [120.0, 115.0, 105.0])
    input_std: list[float] = field(default_factory=lambda: [65.0, 63.0, 66.0])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CodecConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ImgcompError(f"model config has unknown fields: {', '.join(sorted(unknown))}")
        return cls(**data)


PRESETS: dict[str, CodecConfig] = {
    # The published body: 5 groups x 3 residual blocks, n = 128 (1.4 s/step on a 2-core EPYC: `imgcomp bench train`).
    "paper": CodecConfig(),
    # Small enough to train on 2 CPU cores: n = 64, 4 residual blocks.
    "cpu": CodecConfig(channels=64, residual_groups=1, blocks_per_group=4),
    # Between the two, for the GPU job (recipe gpu-multirate): n = 96, 4 residual blocks; its
    # decoder stays within the 0.5 s decode budget of a 768x512 image on 2 CPU cores.
    "mid": CodecConfig(channels=96, residual_groups=1, blocks_per_group=4),
    # Tiny, for tests only.
    "tiny": CodecConfig(
        channels=8, residual_groups=1, blocks_per_group=1, latent_channels=4, context_channels=4
    ),
}


def preset(name: str, **overrides: Any) -> CodecConfig:
    """A copy of a named preset with some fields changed."""
    if name not in PRESETS:
        raise ImgcompError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    data = PRESETS[name].to_dict()
    data.update({k: v for k, v in overrides.items() if v is not None})
    return CodecConfig.from_dict(data)


@register_architecture(ARCHITECTURE)
class ConditionalProbabilityCodec(nn.Module):
    """E, D, Q and P of Mentzer et al. 2018; ``forward`` runs steps 1-6 of sec. 3.5."""

    def __init__(self, config: CodecConfig) -> None:
        super().__init__()
        self.config = config
        n, bn = config.channels, config.batch_norm
        K = config.latent_channels
        self.register_buffer("input_mean", torch.tensor(config.input_mean).view(1, 3, 1, 1))
        self.register_buffer("input_std", torch.tensor(config.input_std).view(1, 3, 1, 1))
        self.encoder = nn.Sequential(
            conv_bn_relu(3, n // 2, 5, 2, bn),
            conv_bn_relu(n // 2, n, 5, 2, bn),
            ResidualBody(n, config.residual_groups, config.blocks_per_group, bn),
            nn.Conv2d(n, K + config.importance_heads, 5, stride=2, padding=2),
        )
        kernel = config.decoder_kernel
        self.decoder = nn.Sequential(
            upconv(K, n, 3 if kernel != 2 else 2, bn),
            ResidualBody(n, config.residual_groups, config.blocks_per_group, bn),
            upconv(n, n // 2, kernel, bn),
            upconv(n // 2, 3, kernel, bn, relu=False),
        )
        self.quantizer = LearnedCenterQuantizer(config.num_centers)
        self.context_model = ContextModel3D(
            self.num_symbols, config.context_channels, in_channels=2 if config.mask_symbol else 1
        )

    @property
    def latent_channels(self) -> int:
        return self.config.latent_channels

    @property
    def num_symbols(self) -> int:
        """Size of the alphabet P codes: the ``L`` centers, plus the masked-out symbol if any."""
        return self.config.num_centers + (1 if self.config.mask_symbol else 0)

    def _zero_symbol(self) -> torch.Tensor:
        """Q(0), shape (1,): what a masked-out latent ``z * m = 0`` quantizes to."""
        return self.quantizer.symbols(torch.zeros(1))

    def masked_out_symbol(self) -> int:
        """The symbol of a position the importance mask switched off."""
        if self.config.mask_symbol:
            return self.config.num_centers
        return int(self._zero_symbol()[0])

    def context_symbols(self, symbols: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The symbols P codes: the quantizer's, with masked-out positions as :meth:`masked_out_symbol`.

        Mentzer et al. code masked-out positions as ``Q(0)``, which unmasked values near 0 share,
        so P must guess where each position's mask ends (the gap between eqs. 13 and 19). With
        ``mask_symbol`` the end is explicit and P pays only for predicting it.
        """
        if not self.config.mask_symbol:
            return symbols
        return torch.where(mask.detach() > 0, symbols, torch.full_like(symbols, self.config.num_centers))

    def symbol_values(self, symbols: torch.Tensor) -> torch.Tensor:
        """Latent values the decoder D gets for coded symbols (the masked-out symbol is Q(0))."""
        if self.config.mask_symbol:
            symbols = torch.where(symbols == self.config.num_centers, self._zero_symbol(), symbols)
        return self.quantizer.values(symbols)

    def symbol_inputs(self) -> torch.Tensor:
        """What P reads for each symbol, ``(num_symbols, F)``: its latent value, and with
        ``mask_symbol`` also 1 for a coded center, 0 for the masked-out symbol."""
        centers = self.quantizer.centers.detach()
        if not self.config.mask_symbol:
            return centers[:, None]
        values = torch.cat([centers, centers[self._zero_symbol()]])
        kept = torch.cat([torch.ones_like(centers), torch.zeros(1, dtype=centers.dtype)])
        return torch.stack([values, kept], dim=1)

    def context_inputs(self, symbols: torch.Tensor, z_hat: torch.Tensor | None = None) -> torch.Tensor:
        """P's input ``(N, F, K, H, W)`` for coded symbols ``(N, K, H, W)``; with ``z_hat`` (the same
        values, carrying the quantizer's soft gradient of eq. 4) the values carry that gradient."""
        inputs = self.symbol_inputs()[symbols].permute(0, 4, 1, 2, 3)
        if z_hat is not None:
            inputs = torch.cat([z_hat.unsqueeze(1), inputs[:, 1:]], dim=1)
        return inputs

    def encoder_logits(self, symbols: torch.Tensor, z_hat: torch.Tensor) -> torch.Tensor:
        """P's logits as a function of E's output: P reads ``z_hat`` with the soft gradient of the
        quantizer (sec. 3.2: "to backpropagate through P we use the same approach as for the
        encoder"), with P's own weights held constant, so the rate reaches E, D, Q and not P."""
        weights = {name: p.detach() for name, p in self.context_model.named_parameters()}
        return torch.func.functional_call(self.context_model, weights, (self.context_inputs(symbols, z_hat),))

    def autoencoder_parameters(self) -> list[nn.Parameter]:
        """Parameters of E, D and Q (optimised on eq. 20)."""
        return [p for name, p in self.named_parameters() if not name.startswith("context_model.")]

    def context_parameters(self) -> list[nn.Parameter]:
        """Parameters of P (optimised on eq. 21)."""
        return list(self.context_model.parameters())

    def encode_latent(self, x: torch.Tensor, head: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Steps 1-3: masked latent ``z`` and the (binarised, straight-through) mask for ``head``.

        ``x`` is (N, 3, H, W) on the 0-255 scale with H, W multiples of 8.
        """
        z, mask, _ = self.analyse(x, head)
        return z, mask

    def analyse(self, x: torch.Tensor, head: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Masked latent, mask and the importance map ``y`` in ``[0, K]`` (N, 1, H/8, W/8)."""
        z, logits = self.encode_unmasked(x, head)
        mask, y = self.importance(logits)
        return z * mask, mask, y

    def encode_unmasked(self, x: torch.Tensor, head: int) -> tuple[torch.Tensor, torch.Tensor]:
        """E's latent before masking and ``head``'s importance logits (N, 1, H/8, W/8), averaged
        over ``importance_pool`` blocks."""
        if not 0 <= head < self.config.importance_heads:
            raise ImgcompError(
                f"importance head {head} out of range (model has {self.config.importance_heads})"
            )
        out = self.encoder((x - self.input_mean) / self.input_std)
        K = self.latent_channels
        logits = out[:, K + head : K + head + 1]
        pool = self.config.importance_pool
        if pool > 1:
            height, width = logits.shape[-2:]
            logits = F.avg_pool2d(logits, pool, ceil_mode=True)
            logits = logits.repeat_interleave(pool, -2).repeat_interleave(pool, -1)[..., :height, :width]
        return out[:, :K], logits

    def importance(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask (binarised, straight-through; sec. 3.4) and importance map ``y = K * sigmoid(logits)``."""
        y = torch.sigmoid(logits) * self.latent_channels
        return binarize_mask(importance_mask(y, self.latent_channels)), y

    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Step 4: ``(z_hat, symbols)``."""
        return self.quantizer(z)

    def decode_latent(self, z_hat: torch.Tensor) -> torch.Tensor:
        """Step 6: reconstruction on the 0-255 scale (not clamped)."""
        return self.decoder(z_hat) * self.input_std + self.input_mean

    def forward(self, x: torch.Tensor, head: int = 0, rate_through_context: bool = True) -> dict[str, torch.Tensor]:
        """Steps 1-6 of sec. 3.5. ``bits`` (``-log2 P`` per symbol) trains P (eq. 21); while E, D,
        Q are trained, ``encoder_bits`` (same values) carries the rate's gradient into them, also
        through P's input unless ``rate_through_context`` is False (then only through the mask,
        as models before imgcomp 0.2 were trained)."""
        z, mask = self.encode_latent(x, head)
        z_hat, symbols = self.quantize(z)
        symbols = self.context_symbols(symbols, mask)
        logits = self.context_model(self.context_inputs(symbols))  # P's own objective: no gradient to E
        bits = symbol_bits(logits, symbols)
        encoder_bits = bits.detach()
        if rate_through_context and torch.is_grad_enabled() and z_hat.requires_grad:
            encoder_bits = symbol_bits(self.encoder_logits(symbols, z_hat), symbols)
        x_hat = self.decode_latent(z_hat)
        return {
            "x_hat": x_hat, "symbols": symbols, "mask": mask, "bits": bits, "logits": logits,
            "encoder_bits": encoder_bits,
        }
