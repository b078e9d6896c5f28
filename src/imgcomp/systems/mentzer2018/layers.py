"""Building blocks shared by the architectures."""

from __future__ import annotations

import torch
from torch import nn


class ResidualBlock(nn.Module):
    """conv3x3 - BN - ReLU - conv3x3 - BN, plus the identity (Mentzer et al. 2018, Fig. 2)."""

    def __init__(self, channels: int, batch_norm: bool = True) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=not batch_norm),
            nn.BatchNorm2d(channels) if batch_norm else nn.Identity(),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1, bias=not batch_norm),
            nn.BatchNorm2d(channels) if batch_norm else nn.Identity(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResidualGroup(nn.Module):
    """Several residual blocks with a skip connection around the group."""

    def __init__(self, channels: int, blocks: int, batch_norm: bool = True) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*[ResidualBlock(channels, batch_norm) for _ in range(blocks)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.blocks(x)


class ResidualBody(nn.Module):
    """The auto-encoder's body: ``groups`` x ``blocks_per_group`` residual blocks, a final
    conv3x3 + BN and a skip around everything (Fig. 2 of Mentzer et al. 2018)."""

    def __init__(self, channels: int, groups: int, blocks_per_group: int, batch_norm: bool = True):
        super().__init__()
        self.groups = nn.Sequential(
            *[ResidualGroup(channels, blocks_per_group, batch_norm) for _ in range(groups)]
        )
        self.tail = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=not batch_norm),
            nn.BatchNorm2d(channels) if batch_norm else nn.Identity(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.tail(self.groups(x))


def conv_bn_relu(cin: int, cout: int, kernel: int, stride: int, batch_norm: bool) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=not batch_norm),
        nn.BatchNorm2d(cout) if batch_norm else nn.Identity(),
        nn.ReLU(inplace=True),
    )


def upconv(cin: int, cout: int, kernel: int, batch_norm: bool, relu: bool = True) -> nn.Sequential:
    """Stride-2 transposed convolution that exactly doubles the size.

    ``kernel`` 5 (or 3) is Mentzer et al.'s deconvolution; ``kernel`` 2 is Patel et al.'s
    checkerboard-free variant (kernel = stride).
    """
    if kernel == 2:
        layer = nn.ConvTranspose2d(cin, cout, 2, stride=2, bias=not batch_norm or not relu)
    else:
        padding = kernel // 2
        layer = nn.ConvTranspose2d(
            cin, cout, kernel, stride=2, padding=padding, output_padding=1,
            bias=not batch_norm or not relu,
        )
    parts: list[nn.Module] = [layer]
    if relu:
        parts += [nn.BatchNorm2d(cout) if batch_norm else nn.Identity(), nn.ReLU(inplace=True)]
    return nn.Sequential(*parts)


def kernel2_from_upconv(weight: torch.Tensor) -> torch.Tensor:
    """A kernel-2 stride-2 transposed convolution's weight that reproduces the :func:`upconv` of
    ``weight`` (kernel 3 or 5, stride 2, padding ``k // 2``) on an input that is constant over each
    output's neighbours: output ``2i + p`` of the wide kernel sums taps ``k = p + padding (mod 2)``
    of inputs ``i - 1 .. i + 1``; the kernel-2 layer reads input ``i`` alone with tap ``p``, so it gets
    the sum of those taps (per axis). How Patel et al.'s checkerboard-free decoder starts from a
    trained Mentzer et al. decoder instead of from scratch. ``weight``: (C_in, C_out, k, k)."""
    k = weight.shape[-1]
    if weight.ndim != 4 or weight.shape[-2] != k or k % 2 == 0:
        raise ValueError(f"expected an odd square transposed-convolution kernel, got {tuple(weight.shape)}")
    padding = k // 2
    out = weight.new_zeros(*weight.shape[:2], 2, 2)
    for a in range(k):
        for b in range(k):
            out[..., (a - padding) % 2, (b - padding) % 2] += weight[..., a, b]
    return out
