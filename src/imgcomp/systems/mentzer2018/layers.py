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
