"""Objectives of Mentzer et al. 2018 (sec. 3.3, eqs. 13, 19, 20, 21), from the shared criteria of
:mod:`imgcomp.criteria`. Used by training and by the encoder's latent refinement; imports no
training code."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from imgcomp.criteria import Criterion, colour_anchor, get_criterion, ms_ssim_similarity
from imgcomp.postfilter.lowpass import LowpassSettings, correct_tensor


@dataclass
class LossWeights:
    """Coefficients of the objectives."""

    beta: float = 10.0  # rate weight (paper: 10)
    distortion_scale: float = 100.0  # d = scale * (1 - MS-SSIM) (paper: 100)
    center_regularization: float = 0.1  # L2 on the quantizer centers (original code)
    # "clip": beta * max(R, t), the paper's switch-off below the target (sec. 4).
    # "two_sided": beta * (max(R, t) + max(t - R, 0)), which also pulls a rate that fell below
    # its target back up. Needed on our small CPU runs: with "clip" the importance maps of all
    # heads collapsed to ~0.04 bpp within 200 steps (nothing rewards keeping channels on).
    rate_loss: str = "two_sided"
    # Colour anchor, off in the paper: d += scale * colour_weight * mean |pool(x) - pool(x_hat)| / 255,
    # with pool an average over colour_pool x colour_pool blocks (1: plain L1, as in the
    # MS-SSIM + L1 mix of Zhao et al. 2017). MS-SSIM compares each channel's local structure and
    # contrast, and means only at its coarsest scale, so a model trained on it alone may drop the
    # colour of whole regions to save bits (green grass decoded orange).
    colour_weight: float = 0.0
    colour_pool: int = 1
    # Train for the decoder output with the low-pass correction layer added (imgcomp.postfilter.lowpass), so
    # E and D need not spend bits on the block means the layer sends. None: the bare decoder output.
    lowpass: LowpassSettings | None = None
    # The distortion criterion of :mod:`imgcomp.criteria`: "ms_ssim" (the paper's), or "dpc" / "dpl"
    # (Patel et al. 2019: DPL + lambda (1 - MS-SSIM), or DPL alone), at ``distortion_scale``.
    criterion: str = "ms_ssim"
    lpips_net: str = "alex"  # the DPL backbone of "dpc" and "dpl": alex or vgg
    ms_ssim_weight: float = 1.0  # lambda of "dpc" (Patel et al.: 1)

    def criterion_function(self) -> Criterion | None:
        """The distortion criterion when it is not plain MS-SSIM (None: MS-SSIM, computed inline)."""
        if self.criterion == "ms_ssim":
            return None
        if self.criterion == "dpc":
            return get_criterion("dpc", scale=self.distortion_scale, net=self.lpips_net, ms_ssim_weight=self.ms_ssim_weight)
        if self.criterion == "dpl":
            return get_criterion("dpl", scale=self.distortion_scale, net=self.lpips_net)
        raise ValueError(f"unknown distortion criterion {self.criterion!r}")


@dataclass
class LossTerms:
    total: torch.Tensor  # what backward() is called on: eq. 20 for E, D, Q plus eq. 21 for P
    distortion: torch.Tensor
    ms_ssim: torch.Tensor
    masked_bpp: torch.Tensor  # MC / pixels (eq. 19)
    bpp: torch.Tensor  # C / pixels (eq. 13)
    rate_term: torch.Tensor


def distortion(
    x: torch.Tensor, x_hat: torch.Tensor, scale: float, colour_weight: float = 0.0, colour_pool: int = 1,
    lowpass: LowpassSettings | None = None, criterion: Criterion | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``d = scale * (1 - MS-SSIM)`` on clamped reconstructions (sec. 4; small crops use fewer
    scales), or ``criterion(x, x_hat)`` when given (e.g. Patel et al.'s ``dpc``, already scaled),
    plus the colour anchor of :class:`LossWeights` when ``colour_weight`` is set; with
    ``lowpass``, of the reconstruction corrected by the low-pass layer. The second value is the
    MS-SSIM, for the logs."""
    x_hat = x_hat.clamp(0.0, 255.0)
    if lowpass is not None:
        x_hat = correct_tensor(x, x_hat, lowpass).clamp(0.0, 255.0)
    if criterion is None:
        value = ms_ssim_similarity(x, x_hat)
        d = scale * (1.0 - value)  # the "ms_ssim" criterion, keeping the MS-SSIM value for the logs
    else:
        d = criterion(x, x_hat)
        with torch.no_grad():
            value = ms_ssim_similarity(x, x_hat)
    if colour_weight > 0.0:
        d = d + colour_anchor(scale * colour_weight, colour_pool)(x, x_hat)
    return d, value


def coding_costs(
    bits: torch.Tensor, mask: torch.Tensor, pixels: int, encoder_bits: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch means of ``C / pixels`` (eq. 13) and ``MC / pixels`` (eq. 19).

    ``MC = sum ceil(m) * (-log2 P)`` is computed from ``encoder_bits`` (the same values with the
    gradient that reaches E, D, Q through P's input; see ``ConditionalProbabilityCodec.forward``)
    when given, else from detached ``bits``: P's gradient comes from ``C`` alone either way.
    """
    bpp = (bits.flatten(1).sum(1) / pixels).mean()
    rate_bits = bits.detach() if encoder_bits is None else encoder_bits
    masked_bpp = ((mask * rate_bits).flatten(1).sum(1) / pixels).mean()
    return bpp, masked_bpp


def rate_distortion_loss(
    x: torch.Tensor, out: dict[str, torch.Tensor], target_bpp: float, weights: LossWeights,
    center_penalty: torch.Tensor, criterion: Criterion | None = None,
) -> LossTerms:
    """Both objectives in one scalar, arranged so one backward pass gives each optimiser its own.

    * E, D, Q: ``d + beta * max(MC / pixels, t)`` (eq. 20 with the rate clip of sec. 4; see
      ``LossWeights.rate_loss`` for the two-sided variant), with ``MC`` as in :func:`coding_costs`.
    * P: ``C = sum -log2 P`` (eq. 21; ``d`` does not depend on P).

    ``criterion``: the distortion if not MS-SSIM (``weights.criterion_function()``, built once by
    the caller: it holds a network).
    """
    bpp, masked_bpp = coding_costs(out["bits"], out["mask"], x.shape[-2] * x.shape[-1], out["encoder_bits"])
    d, value = distortion(
        x, out["x_hat"], weights.distortion_scale, weights.colour_weight, weights.colour_pool, weights.lowpass,
        criterion,
    )
    rate_term = weights.beta * torch.clamp(masked_bpp, min=target_bpp)
    if weights.rate_loss == "two_sided":
        rate_term = rate_term + weights.beta * torch.clamp(target_bpp - masked_bpp, min=0.0)
    elif weights.rate_loss != "clip":
        raise ValueError(f"unknown rate loss {weights.rate_loss!r}")
    total = d + rate_term + weights.center_regularization * center_penalty + bpp
    return LossTerms(total, d.detach(), value.detach(), masked_bpp.detach(), bpp.detach(), rate_term.detach())
