"""Importance map for spatial bit allocation (Mentzer et al. 2018, sec. 3.4)."""

from __future__ import annotations

import torch


def importance_mask(y: torch.Tensor, channels: int) -> torch.Tensor:
    """Expand an importance map ``y`` (N, 1, H, W) with values in ``[0, K]`` into the mask ``m``.

    ``m[k] = clip(y - k, 0, 1)`` for ``k = 0..K-1`` (eq. 14): channel ``k`` is fully on where
    ``y >= k + 1``, fully off where ``y <= k``, and ramps linearly in between.
    """
    k = torch.arange(channels, device=y.device, dtype=y.dtype).view(1, channels, 1, 1)
    return (y - k).clamp(0.0, 1.0)


def binarize_mask(mask: torch.Tensor) -> torch.Tensor:
    """``ceil(m)`` in the forward pass, identity in the backward pass (sec. 3.4)."""
    return torch.ceil(mask.detach()) + (mask - mask.detach())
