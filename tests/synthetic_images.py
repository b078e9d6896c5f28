"""Small deterministic test images made on the fly (no files, no network)."""

from __future__ import annotations

import numpy as np


def smooth_image(height: int, width: int, seed: int = 0, noise: float = 4.0) -> np.ndarray:
    """A smooth colour gradient with some structure and mild noise, ``(H, W, 3)`` uint8."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    phase = rng.uniform(0, 2 * np.pi, size=3)
    red = 128 + 90 * np.sin(x / (width / 3.1) + phase[0]) * np.cos(y / (height / 2.3))
    green = 40 + 170 * (x + y) / (width + height) + 20 * np.sin(y / 5.0 + phase[1])
    blue = 200 - 150 * y / max(height - 1, 1) + 25 * np.cos((x - y) / 9.0 + phase[2])
    image = np.stack([red, green, blue], axis=-1) + rng.normal(0, noise, size=(height, width, 3))
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)
