"""Deterministic stand-in backbones for LPIPS v0.1 tests: torchvision AlexNet / VGG-16 ``features``
state dicts with He-scaled Gaussian weights from NumPy's PCG64 (the same numbers on every machine
and torch version). The torchvision ImageNet weights cannot be had offline; with these, our network
and the authors' ``lpips`` package are compared on identical weights (scripts/lpips_reference.py)."""

from __future__ import annotations

import numpy as np
import torch

# torchvision's features indices of the convolutions up to the last LPIPS slice, with shapes.
CONVS = {
    "alex": [(0, 64, 3, 11), (3, 192, 64, 5), (6, 384, 192, 3), (8, 256, 384, 3), (10, 256, 256, 3)],
    "vgg": [(i, o, c, 3) for i, o, c in [(0, 64, 3), (2, 64, 64), (5, 128, 64), (7, 128, 128),
                                         (10, 256, 128), (12, 256, 256), (14, 256, 256),
                                         (17, 512, 256), (19, 512, 512), (21, 512, 512),
                                         (24, 512, 512), (26, 512, 512), (28, 512, 512)]],
}


def synthetic_backbone(net: str, seed: int = 2018) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(seed)
    state = {}
    for index, cout, cin, k in CONVS[net]:
        std = np.sqrt(2.0 / (cin * k * k))
        state[f"features.{index}.weight"] = torch.from_numpy(
            (rng.standard_normal((cout, cin, k, k)) * std).astype(np.float32))
        state[f"features.{index}.bias"] = torch.from_numpy(
            (rng.standard_normal(cout) * 0.05).astype(np.float32))
    return state
