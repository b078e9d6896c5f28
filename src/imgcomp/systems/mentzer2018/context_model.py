"""The 3-D masked-CNN context model P (Mentzer et al. 2018, sec. 3.2 and supplement).

The symbol volume ``z_hat`` of shape (K, H, W) is treated as a one-channel 3-D volume whose depth
axis is the latent channel. Every convolution is masked (supplement, Algorithm 1) so that the
logits of symbol (c, h, w) depend only on symbols before it in raster order (depth, then row,
then column): the first layer sees strictly earlier positions (mask "A"), later layers also the
centre (mask "B"), which keeps the whole network causal by induction.

Architecture (Fig. 3): ``3Dk3n24`` (A) - ReLU - residual block of two ``3Dk3n24`` (B) -
``3Dk3nL`` (B), giving ``L`` logits per symbol. P reads each coded symbol as a small feature vector
(its center value; see :meth:`ConditionalProbabilityCodec.symbol_inputs` for the variant that also
marks where the importance mask is off), one input channel of the first layer per feature.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn


def causal_mask_3d(kernel_size: int = 3, include_centre: bool = False) -> torch.Tensor:
    """Algorithm 1 of the supplement: 1 for taps before the centre in (d, h, w) raster order."""
    size = kernel_size**3
    centre = size // 2
    flat = torch.zeros(size)
    flat[: centre + (1 if include_centre else 0)] = 1.0
    return flat.view(kernel_size, kernel_size, kernel_size)


class MaskedConv3d(nn.Conv3d):
    """A 3-D convolution whose kernel is multiplied by a fixed causal mask ("A" or "B")."""

    def __init__(self, in_channels: int, out_channels: int, mask_type: str, kernel_size: int = 3):
        if mask_type not in ("A", "B"):
            raise ValueError("mask_type must be 'A' (strict) or 'B' (with centre)")
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.mask_type = mask_type
        self.register_buffer(
            "mask", causal_mask_3d(kernel_size, include_centre=mask_type == "B"), persistent=False
        )

    def masked_weight(self) -> torch.Tensor:
        return self.weight * self.mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv3d(x, self.masked_weight(), self.bias, padding=self.padding)

    def taps(self) -> list[tuple[int, int, int]]:
        """Offsets (dc, dh, dw) of the kernel taps the mask keeps."""
        k = self.kernel_size[0]
        r = k // 2
        return [
            (dc - r, dh - r, dw - r)
            for dc, dh, dw in itertools.product(range(k), repeat=3)
            if self.mask[dc, dh, dw] > 0
        ]


class ContextModel3D(nn.Module):
    """P: ``(N, F, K, H, W)`` symbol features (or ``(N, K, H, W)`` values when ``F = 1``) ->
    ``(N, L, K, H, W)`` logits over the ``L = num_centers`` symbols."""

    def __init__(self, num_centers: int, channels: int = 24, kernel_size: int = 3, in_channels: int = 1) -> None:
        super().__init__()
        self.conv_in = MaskedConv3d(in_channels, channels, "A", kernel_size)
        self.res_conv1 = MaskedConv3d(channels, channels, "B", kernel_size)
        self.res_conv2 = MaskedConv3d(channels, channels, "B", kernel_size)
        self.conv_out = MaskedConv3d(channels, num_centers, "B", kernel_size)

    def layers(self) -> list[MaskedConv3d]:
        """The masked convolutions in order (used by the wavefront coder)."""
        return [self.conv_in, self.res_conv1, self.res_conv2, self.conv_out]

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = inputs.unsqueeze(1) if inputs.dim() == 4 else inputs
        h1 = F.relu(self.conv_in(x))
        h2 = F.relu(self.res_conv1(h1))
        h3 = h1 + self.res_conv2(h2)
        return self.conv_out(h3)


def symbol_bits(logits: torch.Tensor, symbols: torch.Tensor) -> torch.Tensor:
    """``-log2 P(symbol)`` per symbol: the summands of the coding cost C (eq. 13).

    ``logits`` is (N, L, K, H, W), ``symbols`` (N, K, H, W) indices; returns (N, K, H, W).
    """
    nats = F.cross_entropy(logits, symbols, reduction="none")
    return nats / torch.log(torch.tensor(2.0, dtype=nats.dtype))
