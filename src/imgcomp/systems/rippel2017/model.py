"""The networks of Rippel & Bourdev 2017 (sec. 3.1): pyramidal analysis, interscale alignment,
quantisation (sec. 3.2.1) and the mirrored synthesis.

Encoder: a stem (conv 3x3 + leaky ReLU(0.2)) gives level 0; each level m > 0 comes from level m-1
through a learned stride-2 downsampler (conv 3x3, stride 2). Each level's feature extractor is a
stack of conv 3x3 + leaky ReLU. Interscale alignment maps every level's features to the target
level's size (strided conv below it, conv 3x3 at it, strided transposed conv above it), sums them
and applies a few more convolutions; ``tanh`` gives features in [-1, 1]. Decoder: the mirror
image: convolutions at the latent's size, one branch per level back to that level's size (the
inverse alignments), each level's extractor stack, then the levels are merged from the coarsest
to the finest by learned stride-2 upsamplers, and a last conv gives RGB.

The model also holds the coding table of the bit contexts (:mod:`.bit_context`) and the training
state of the adaptive codelength regularisation (:mod:`.acr`) as buffers, so the exported weights
(and the container's model tag, their SHA-256) cover everything the coded bytes depend on.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from imgcomp.systems.rippel2017 import bit_context
from imgcomp.systems.rippel2017.bitplanes import quantise
from imgcomp.systems.rippel2017.config import RippelConfig

SLOPE = 0.2


def _act(x: torch.Tensor) -> torch.Tensor:
    """Leaky ReLU(0.2), in place: every caller passes a fresh conv output or sum."""
    return F.leaky_relu_(x, SLOPE)


def _stack(channels: int, layers: int) -> nn.ModuleList:
    return nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1) for _ in range(layers))


def _run(stack: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
    for conv in stack:
        x = _act(conv(x))
    return x


def _to_level(source: int, target: int, cin: int, cout: int) -> nn.Module:
    """A map from level ``source``'s size to level ``target``'s (kernel = stride = 2^|difference|)."""
    if source == target:
        return nn.Conv2d(cin, cout, 3, padding=1)
    factor = 2 ** abs(source - target)
    if source < target:
        return nn.Conv2d(cin, cout, factor, stride=factor)
    return nn.ConvTranspose2d(cin, cout, factor, stride=factor)


class PyramidEncoder(nn.Module):
    """Image (normalised) -> features in [-1, 1] of shape (N, C, H / 2^t, W / 2^t)."""

    def __init__(self, config: RippelConfig):
        super().__init__()
        ch, t = config.scale_channels, config.target_scale
        self.stem = nn.Conv2d(3, ch[0], 3, padding=1)
        self.down = nn.ModuleList(nn.Conv2d(ch[m - 1], ch[m], 3, stride=2, padding=1) for m in range(1, config.scales))
        self.extract = nn.ModuleList(_stack(ch[m], config.extractor_layers[m]) for m in range(config.scales))
        self.align = nn.ModuleList(_to_level(m, t, ch[m], config.align_channels) for m in range(config.scales))
        self.mix = _stack(config.align_channels, config.align_layers)
        self.out = nn.Conv2d(config.align_channels, config.latent_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        level = _act(self.stem(x))
        total = None
        for m, (extract, align) in enumerate(zip(self.extract, self.align)):
            if m:
                level = _act(self.down[m - 1](level))
            aligned = align(_run(extract, level))
            total = aligned if total is None else total + aligned
        return torch.tanh(self.out(_run(self.mix, _act(total))))


class PyramidDecoder(nn.Module):
    """Dequantised features -> image (normalised), mirroring :class:`PyramidEncoder`."""

    def __init__(self, config: RippelConfig):
        super().__init__()
        ch, t = config.scale_channels, config.target_scale
        self.inp = nn.Conv2d(config.latent_channels, config.align_channels, 3, padding=1)
        self.mix = _stack(config.align_channels, config.align_layers)
        self.first_branch = config.decoder_first_branch
        self.branch = nn.ModuleList(
            _to_level(t, m, config.align_channels, ch[m]) for m in range(self.first_branch, config.scales)
        )
        self.extract = nn.ModuleList(_stack(ch[m], config.decoder_layers[m]) for m in range(config.scales))
        self.up = nn.ModuleList(nn.ConvTranspose2d(ch[m + 1], ch[m], 2, stride=2) for m in range(config.scales - 1))
        self.out = nn.Conv2d(ch[0], 3, 3, padding=1)

    def forward(self, y_hat: torch.Tensor) -> torch.Tensor:
        h = _run(self.mix, _act(self.inp(y_hat)))
        merged = None
        for m in range(len(self.extract) - 1, -1, -1):
            if m < self.first_branch:  # no branch: this level is the upsampled coarser ones
                merged = _run(self.extract[m], _act(self.up[m](merged)))
                continue
            level = _run(self.extract[m], _act(self.branch[m - self.first_branch](h)))
            merged = level if merged is None else level + _act(self.up[m](merged))
        return self.out(merged)


class RippelCodec(nn.Module):
    """Encoder, quantiser with per-quality steps, decoder; coding table and ACR state as buffers."""

    def __init__(self, config: RippelConfig):
        super().__init__()
        self.config = config
        self.encoder = PyramidEncoder(config)
        self.decoder = PyramidDecoder(config)
        # log2 of the step multiplier m >= 1 per quality (0 = coarsest) and channel.
        spread = torch.linspace(2.5, 0.0, config.qualities) if config.qualities > 1 else torch.zeros(1)
        self.log2_step = nn.Parameter(spread[:, None].repeat(1, config.latent_channels))
        self.register_buffer("input_mean", torch.tensor(config.input_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("input_std", torch.tensor(config.input_std).view(1, 3, 1, 1), persistent=False)
        contexts = bit_context.table_size(config)
        self.register_buffer("context_table", torch.full((contexts,), bit_context.HALF, dtype=torch.int32))
        self.register_buffer("context_counts", torch.zeros(contexts, 2))  # training: decayed bit counts
        self.register_buffer("acr_alpha", torch.full((config.qualities,), 0.01))  # training: ACR weight per quality

    def set_input_statistics(self, mean: list[float], std: list[float]) -> None:
        """Change the fixed input normalisation (config and buffers together)."""
        self.config.input_mean, self.config.input_std = list(mean), list(std)
        self.input_mean.copy_(torch.tensor(mean).view(1, 3, 1, 1))
        self.input_std.copy_(torch.tensor(std).view(1, 3, 1, 1))

    def step(self, quality: int) -> torch.Tensor:
        """Bin size per channel, (1, C, 1, 1): 2^-(B-1) * 2^max(log2_step, 0)."""
        base = 2.0 ** -(self.config.bits - 1)
        return (base * torch.exp2(self.log2_step[quality].clamp(min=0.0))).view(1, -1, 1, 1)

    def encode_features(self, x: torch.Tensor) -> torch.Tensor:
        """Image on the 0-255 scale (padded to ``pad_multiple``) -> features in [-1, 1]."""
        return self.encoder((x - self.input_mean) / self.input_std)

    def decode_features(self, y_hat: torch.Tensor) -> torch.Tensor:
        """Dequantised features -> image on the 0-255 scale (unclamped)."""
        return self.decoder(y_hat) * self.input_std + self.input_mean

    def symbols(self, x: torch.Tensor, quality: int) -> torch.Tensor:
        """The integer symbols (N, C, h, w), int64, of an image batch at ``quality`` (0-based)."""
        q, _ = quantise(self.encode_features(x), self.step(quality))
        limit = 2 ** (self.config.bits - 1)
        return q.detach().round().clamp(-limit, limit).to(torch.int64)

    def dequantise(self, symbols: torch.Tensor, quality: int) -> torch.Tensor:
        return symbols.to(self.log2_step.dtype) * self.step(quality)

    def forward(self, x: torch.Tensor, quality: int) -> dict[str, torch.Tensor]:
        """Training pass: straight-through symbols ``q`` (symbol units) and the reconstruction."""
        q, y_hat = quantise(self.encode_features(x), self.step(quality))
        return {"q": q, "x_hat": self.decode_features(y_hat)}
