"""Pictures of what a trained model does (Mentzer et al. 2018, Fig. 6)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from imgcomp.errors import ImgcompError
from imgcomp.io import load_image, save_image
from imgcomp.models.export import load_model
from imgcomp.systems.mentzer2018.model import DOWNSAMPLING
from imgcomp.tensors import image_to_tensor, pad_to_multiple


def _grey(values: np.ndarray, low: float, high: float, scale: int) -> np.ndarray:
    normalised = np.clip((values - low) / max(high - low, 1e-9), 0, 1)
    grey = (normalised * 255).round().astype(np.uint8)
    grey = np.repeat(np.repeat(grey, scale, axis=0), scale, axis=1)
    return np.repeat(grey[:, :, None], 3, axis=2)


def visualize(
    image_path: str | os.PathLike, model_dir: str | os.PathLike, out_dir: str | os.PathLike,
    quality: int | None = None, force: bool = False,
) -> list[Path]:
    """Write ``importance_map.png`` (y / K, upsampled to image size) and ``latents.png`` (every
    quantized latent channel in order, a grid; masked-out entries show as the zero symbol)."""
    loaded = load_model(model_dir)
    model, heads = loaded.model, loaded.config.importance_heads
    head = heads - 1 if quality is None else quality - 1
    if not 0 <= head < heads:
        raise ImgcompError(f"quality must be 1..{heads} for this model")
    image = load_image(image_path)
    x = pad_to_multiple(image_to_tensor(image), DOWNSAMPLING)
    with torch.no_grad():
        z, _, y = model.analyse(x, head)
        z_hat, _ = model.quantize(z)
    K = loaded.config.latent_channels
    importance = y[0, 0].numpy()
    latents = z_hat[0].numpy()
    centers = model.quantizer.centers.detach().numpy()
    columns = int(np.ceil(np.sqrt(K)))
    rows = int(np.ceil(K / columns))
    height, width = latents.shape[1:]
    grid = np.full((rows * (height + 2), columns * (width + 2)), centers.min(), dtype=np.float32)
    for k in range(K):
        r, c = divmod(k, columns)
        grid[r * (height + 2) : r * (height + 2) + height, c * (width + 2) : c * (width + 2) + width] = latents[k]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    importance_image = _grey(importance, 0.0, float(K), DOWNSAMPLING)[: image.shape[0], : image.shape[1]]
    paths = [
        save_image(importance_image, out / "importance_map.png", force=force),
        save_image(_grey(grid, float(centers.min()), float(centers.max()), 4), out / "latents.png", force=force),
    ]
    return paths
