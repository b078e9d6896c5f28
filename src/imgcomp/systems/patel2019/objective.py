"""The objective of Patel et al. 2019 (sec. 3.2-3.3): ``L = alpha D + beta R`` with Mentzer et
al.'s rate term and clip (eq. 20 of Mentzer et al. 2018, computed by their objective) and the
distortion

    D(x, x_hat) = DPL(x, x_hat) + lambda (1 - MS-SSIM(x, x_hat)),   lambda = 1,

DPL being eq. 1 (LPIPS: unit-normalised activations of five ReLU layers, learned per-channel lin
weights, spatial mean, sum over layers). The criteria are shared (``dpc`` and ``dpl`` in
:mod:`imgcomp.criteria`); this module holds the paper's settings for them, as training-config
fields of the coding system.
"""

from __future__ import annotations

from typing import Any

# Patel et al.: lambda = 1. Our distortion scale (alpha) is Mentzer et al.'s 100, so beta = 10 keeps
# its meaning; the paper's VGG-16 backbone costs 2.5x AlexNet's per CPU training step (docs/patel2019.md).
DPC_OBJECTIVE: dict[str, Any] = {
    "criterion": "dpc",
    "ms_ssim_weight": 1.0,
    "distortion_scale": 100.0,
    "beta": 10.0,
    "lpips_net": "alex",
}

# Patel et al.'s decoder: transposed convolutions of kernel 2 and stride 2 (sec. 3.1).
DPC_DECODER: dict[str, Any] = {"decoder_kernel": 2}
