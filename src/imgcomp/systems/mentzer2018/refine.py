"""Encoder-side latent refinement: optimise one image's latent for the decoder at encode time.

Not part of Mentzer et al. (2018). Their encoder E maps an image to its latent in one pass
(amortised inference); it is trained for the average image, not for the one being coded. At
encode time the decoder D and the context model P are known, so the latent can be improved for
this image by gradient descent on the paper's own objective (eq. 20), with the hard-quantised
forward pass and the soft gradient of eq. 4 (as in Campos et al. 2019, "Content adaptive
optimization for neural image compression"):

    minimise  d(x, D(Q(z)) [+ low-pass layer]) + lambda * sum(-log2 P(Q(z))) / pixels

Both the latent values and the importance map (how many channels each position codes) are
optimised, the map through the straight-through mask as in training. The file format and the
decoder are untouched: a refined file is an ordinary file of the same model. The price is
encode time (each step runs D and P forwards and backwards on the whole image).
"""

from __future__ import annotations

import torch

from imgcomp.errors import ImgcompError
from imgcomp.postfilter.lowpass import LowpassSettings
from imgcomp.metrics import ms_ssim_scales
from imgcomp.systems.mentzer2018.context_model import symbol_bits
from imgcomp.systems.mentzer2018.objective import LossWeights, distortion

_TRAINING = LossWeights()  # the objective's scales as in training (sec. 4)
DEFAULT_RATE_WEIGHT = _TRAINING.beta  # lambda: the paper's beta, the slope the models were trained at
DEFAULT_LEARNING_RATE = 0.05  # Adam step on latent values (centers lie in about [-2, 2]) and logits
MAX_PIXELS = 2048 * 2048  # backward passes hold D's activations: ~1.3 GB per megapixel (peak ~5.5 GB)


def refine_latent(
    codec, x: torch.Tensor, head: int, steps: int, height: int, width: int,
    lowpass: LowpassSettings | None, rate_weight: float | None = None, learning_rate: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(z * mask, mask)`` for the padded image ``x`` (1, 3, H', W'), after ``steps`` Adam steps on
    the objective above over the latent and the importance logits; the best pair seen is returned
    (the encoder's own if no step improved on it). ``height`` x ``width`` is the image without
    padding, where distortion counts. Images too small for two MS-SSIM scales (under 22 pixels a
    side) have nothing to score and keep the encoder's pair."""
    with torch.no_grad():
        z, logits = codec.encode_unmasked(x, head)
    if steps > 0 and ms_ssim_scales(height, width) >= 2:
        if height * width > MAX_PIXELS:
            raise ImgcompError(
                f"image {width}x{height} is too large to refine (at most {MAX_PIXELS // 1_000_000} megapixels); encode it without --refine"
            )
        z, logits = _optimise(
            codec, z, logits, x[..., :height, :width], steps, lowpass,
            DEFAULT_RATE_WEIGHT if rate_weight is None else rate_weight, learning_rate or DEFAULT_LEARNING_RATE,
        )
    with torch.no_grad():
        mask, _ = codec.importance(logits)
        return z * mask, mask


def _optimise(
    codec, z_start: torch.Tensor, logits_start: torch.Tensor, target: torch.Tensor, steps: int,
    lowpass: LowpassSettings | None, rate_weight: float, learning_rate: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Adam on ``(z, logits)``; the best pair seen, scored on the objective's (hard) value."""
    z = z_start.clone().requires_grad_(True)
    logits = logits_start.clone().requires_grad_(True)
    optimiser = torch.optim.Adam([z, logits], lr=learning_rate)
    best_loss, best = float("inf"), (z_start, logits_start)
    with torch.enable_grad():  # a loaded model's weights need none: only z and the logits move
        for step in range(steps + 1):
            loss = refinement_objective(codec, z, logits, target, lowpass, rate_weight)
            if float(loss.detach()) < best_loss:
                best_loss, best = float(loss.detach()), (z.detach().clone(), logits.detach().clone())
            if step == steps:  # the last pass only scores the last step
                break
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
    return best


def refinement_objective(
    codec, z: torch.Tensor, logits: torch.Tensor, target: torch.Tensor, lowpass: LowpassSettings | None,
    rate_weight: float = DEFAULT_RATE_WEIGHT,
) -> torch.Tensor:
    """``d + lambda * bits / pixels`` for the unmasked latent ``z`` and importance ``logits`` of the
    image ``target`` (1, 3, H, W). The value is what the coded file gives (hard quantization and
    mask; P's estimate of the bits of every coded symbol). The gradient reaches ``z`` through the
    soft quantization of eq. 4 (in D and in P's input), and the mask as in training: through
    ``z * m`` and, for the rate, through the masked cost of eq. 19 (dropping a position saves its
    bits). With ``rate_weight`` 0, P is not run."""
    height, width = target.shape[-2:]
    mask, _ = codec.importance(logits)
    z_hat, symbols = codec.quantize(z * mask)
    x_hat = codec.decode_latent(z_hat)[..., :height, :width]
    objective, _ = distortion(target, x_hat, _TRAINING.distortion_scale, lowpass=lowpass)
    if rate_weight:
        symbols = codec.context_symbols(symbols, mask)
        bits = symbol_bits(codec.encoder_logits(symbols, z_hat), symbols)
        masked_cost = (mask - mask.detach()) * bits.detach()  # value 0, gradient: eq. 19 w.r.t. m
        objective = objective + rate_weight * (bits + masked_cost).sum() / (height * width)
    return objective
