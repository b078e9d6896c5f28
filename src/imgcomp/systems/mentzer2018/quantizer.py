"""Learned-center scalar quantizer (Mentzer et al. 2018, sec. 3.1, eqs. 2-4)."""

from __future__ import annotations

import torch
from torch import nn


class LearnedCenterQuantizer(nn.Module):
    """Maps every latent value to the nearest of ``L`` learned centers.

    Forward pass: hard assignment (eq. 2). Backward pass: the soft assignment
    ``softmax(-sigma * |z - c|)`` of eq. 3, through ``z_bar = z_soft + sg(z_hard - z_soft)`` (eq. 4).
    Centers start uniform in ``[-2, 2]`` as in the original code.
    """

    def __init__(self, num_centers: int = 6, sigma: float = 1.0, init_range: float = 2.0) -> None:
        super().__init__()
        if num_centers < 2:
            raise ValueError("a quantizer needs at least 2 centers")
        self.sigma = sigma
        initial = torch.empty(num_centers).uniform_(-init_range, init_range)
        self.centers = nn.Parameter(initial.sort().values)

    @property
    def num_centers(self) -> int:
        return self.centers.numel()

    def symbols(self, z: torch.Tensor) -> torch.Tensor:
        """Index of the nearest center for every element (int64, same shape as ``z``)."""
        distance = (z.unsqueeze(-1) - self.centers.detach()).abs()
        return distance.argmin(dim=-1)

    def values(self, symbols: torch.Tensor) -> torch.Tensor:
        """Center values for symbol indices (the inverse of :meth:`symbols`)."""
        return self.centers[symbols]

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(z_bar, symbols)``: quantized values with soft gradients, and indices."""
        distance = (z.unsqueeze(-1) - self.centers).abs()
        symbols = distance.argmin(dim=-1)
        z_hard = self.centers[symbols]
        if not torch.is_grad_enabled() or not (z.requires_grad or self.centers.requires_grad):
            return z_hard, symbols
        weights = torch.softmax(-self.sigma * distance, dim=-1)
        z_soft = (weights * self.centers).sum(dim=-1)
        return z_hard + (z_soft - z_soft.detach()), symbols

    def regularization(self) -> torch.Tensor:
        """L2 penalty on the centers, ``sum(c^2) / 2`` (weighted 0.1 by the trainer)."""
        return 0.5 * (self.centers**2).sum()
