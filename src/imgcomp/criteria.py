"""Differentiable image criteria, by name: what training objectives (and encoder-side refinement)
compare an image and its reconstruction with.

Registered now: ``ms_ssim`` (``scale * (1 - MS-SSIM)``, Mentzer et al. 2018 sec. 4) and
``colour`` (the L1 colour anchor: ``scale * mean |pool(x) - pool(x_hat)| / 255``, as in the
MS-SSIM + L1 mix of Zhao et al. 2017). LPIPS (Patel et al.) and adversarial losses (Rippel &
Bourdev) will register here. Shared, not under :mod:`imgcomp.training`, because the encoder's
latent refinement optimises the same objective at compress time and the runtime must not import
training code. Inputs are (N, 3, H, W) tensors on the 0-255 scale.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from imgcomp.errors import ImgcompError
from imgcomp.metrics import ms_ssim_tensor

Criterion = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
_CRITERIA: dict[str, Callable[..., Criterion]] = {}


def register_criterion(name: str):
    """Decorator: make ``factory(**params)`` available as :func:`get_criterion` ``(name, **params)``."""

    def decorate(factory):
        if name in _CRITERIA:
            raise ValueError(f"criterion {name!r} registered twice")
        _CRITERIA[name] = factory
        return factory

    return decorate


def available_criteria() -> list[str]:
    return sorted(_CRITERIA)


def get_criterion(name: str, **params) -> Criterion:
    try:
        factory = _CRITERIA[name]
    except KeyError:
        raise ImgcompError(f"unknown criterion {name!r}; known: {', '.join(available_criteria())}") from None
    return factory(**params)


def ms_ssim_similarity(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Batch-mean MS-SSIM (small crops use fewer scales)."""
    return ms_ssim_tensor(x, x_hat, 255.0, allow_fewer_scales=True).mean()


@register_criterion("ms_ssim")
def ms_ssim_loss(scale: float = 100.0) -> Criterion:
    """``scale * (1 - MS-SSIM)`` (paper: 100; the original code: 5000)."""

    def criterion(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        return scale * (1.0 - ms_ssim_similarity(x, x_hat))

    return criterion


@register_criterion("colour")
def colour_anchor(scale: float = 100.0, pool: int = 1) -> Criterion:
    """``scale * mean |pool(x) - pool(x_hat)| / 255`` over ``pool`` x ``pool`` block means (1: plain
    L1). MS-SSIM compares means only at its coarsest scale, weakly; this keeps regions' colours."""
    if pool < 1:
        raise ImgcompError(f"colour pool must be >= 1, got {pool}")

    def criterion(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        if pool > 1:
            x, x_hat = F.avg_pool2d(x, pool), F.avg_pool2d(x_hat, pool)
        return scale * (x - x_hat).abs().mean() / 255.0

    return criterion
