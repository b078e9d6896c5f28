"""Adaptive codelength regularisation (Rippel & Bourdev 2017, sec. 3.2.4).

The penalty (eq. of sec. 3.2.4) pushes the quantised features towards values the bitplane coder
codes cheaply, small magnitudes and smooth neighbourhoods:

    P(y_hat) = alpha_t / (C H W) * sum_chw [ log2 |y_chw| + sum_{(x,y) in S} log2 |y_chw - y_{c,h-y,w-x}| ]

with S = {(0,1), (1,0), (1,1), (-1,1)} and ``log2(eps + |.|)`` so that zeros are finite. ``y`` is in
symbol units (the integers the coder sees, with a straight-through gradient). ``alpha_t`` is set
by feedback: :class:`AcrController` raises it while the coder's measured rate is above the target
and lowers it while below, so training settles at the target rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

SHIFTS = ((0, 1), (1, 0), (1, 1), (-1, 1))  # S, as (x, y): compare with (h - y, w - x)
EPS = 1.0


def _shifted_difference(q: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """``q[c, h, w] - q[c, h - dy, w - dx]`` over the positions where both exist."""
    H, W = q.shape[-2:]
    h0, h1 = max(dy, 0), H + min(dy, 0)
    w0, w1 = max(dx, 0), W + min(dx, 0)
    return q[..., h0:h1, w0:w1] - q[..., h0 - dy : h1 - dy, w0 - dx : w1 - dx]


def codelength_penalty(q: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """The penalty without ``alpha``: batch mean of ``1/(CHW) sum [...]`` for symbols (N, C, H, W)."""
    n, c, h, w = q.shape
    total = torch.log2(eps + q.abs()).sum()
    for dx, dy in SHIFTS:
        total = total + torch.log2(eps + _shifted_difference(q, dx, dy).abs()).sum()
    return total / (n * c * h * w)


@dataclass
class AcrController:
    """Feedback on ``alpha``: ``log2 alpha += gain * log2(measured / target)``, clamped to
    [low, high]. Multiplicative, so the correction is proportional to the relative rate error."""

    target: float
    gain: float = 0.05
    low: float = 1e-5
    high: float = 10.0

    def update(self, alpha: float, measured: float) -> float:
        if not (measured > 0 and math.isfinite(measured)):
            return alpha
        step = self.gain * math.log2(measured / self.target)
        return float(min(max(alpha * 2.0**step, self.low), self.high))
