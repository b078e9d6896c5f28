"""Differentiable image criteria, by name: what training objectives (and encoder-side refinement)
compare an image and its reconstruction with.

Registered: ``ms_ssim`` (``scale * (1 - MS-SSIM)``, Mentzer et al. 2018 sec. 4), ``colour``
(the L1 colour anchor: ``scale * mean |pool(x) - pool(x_hat)| / 255``, as in the MS-SSIM + L1 mix
of Zhao et al. 2017), ``dpl`` (Patel et al. 2019's deep perceptual loss, eq. 1: LPIPS) and
``dpc`` (their distortion ``DPL + lambda (1 - MS-SSIM)``, sec. 3.2). Adversarial losses (Rippel &
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


LPIPS_NETS = ("alex", "vgg")


def _lpips_distance(net: str, variant: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Batch-mean LPIPS of a frozen network (the authors' weights; see :func:`imgcomp.lpips.lpips_network`)."""
    if net not in LPIPS_NETS:
        raise ImgcompError(f"unknown LPIPS backbone {net!r} (choose from {', '.join(LPIPS_NETS)})")
    from imgcomp.lpips import lpips_network

    network = lpips_network(net, variant, download=True)

    def distance(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        return network.to(x.device)(x_hat, x.detach(), data_range=255.0).mean()

    return distance


@register_criterion("dpl")
def deep_perceptual_loss(scale: float = 100.0, net: str = "alex", variant: str = "shift_tolerant") -> Criterion:
    """``scale * DPL(x, x_hat)``, Patel et al. 2019 eq. 1: the distance of the unit-normalised
    activations of five ReLU layers, weighted per channel by the learned lin layers, averaged over
    space and summed over layers, i.e. LPIPS (Zhang et al. 2018). ``net``: ``alex`` (ST-LPIPS
    AlexNet, the default: 3-4x cheaper per training step on CPU) or ``vgg`` (VGG-16, the paper's
    choice). The LPIPS weights are frozen; the gradient reaches ``x_hat`` only."""
    distance = _lpips_distance(net, variant)

    def criterion(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        return scale * distance(x, x_hat)

    return criterion


@register_criterion("dpc")
def deep_perceptual_distortion(
    scale: float = 100.0, net: str = "alex", variant: str = "shift_tolerant", ms_ssim_weight: float = 1.0,
) -> Criterion:
    """``scale * (DPL(x, x_hat) + lambda * (1 - MS-SSIM(x, x_hat)))``: the distortion ``D`` of
    Patel et al. 2019 (sec. 3.2, "D = DPL + lambda MS-SSIM" with MS-SSIM as a loss, lambda = 1),
    ``lambda = ms_ssim_weight``. ``scale`` puts it on the footing of the ``ms_ssim`` criterion
    (Mentzer et al.'s 100), so the rate weight beta keeps its meaning."""
    if ms_ssim_weight < 0.0:
        raise ImgcompError(f"ms_ssim_weight must be >= 0, got {ms_ssim_weight}")
    distance = _lpips_distance(net, variant)

    def criterion(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        return scale * (distance(x, x_hat) + ms_ssim_weight * (1.0 - ms_ssim_similarity(x, x_hat)))

    return criterion
