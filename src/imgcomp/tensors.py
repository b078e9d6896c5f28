"""Conversions between image arrays (H, W, 3) uint8 and model tensors (1, 3, H, W) float 0-255."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from imgcomp.errors import ImgcompError


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """A (1, 3, H, W) float tensor of an (H, W, 3) uint8 image; the image is never written to."""
    array = np.ascontiguousarray(image)
    if not array.flags.writeable:  # e.g. np.asarray(PIL image): torch warns about read-only memory
        array = array.copy()
    return torch.from_numpy(array).permute(2, 0, 1)[None].float()


def tensor_to_image(x: torch.Tensor) -> np.ndarray:
    """Round and clamp a (1, 3, H, W) tensor back to a uint8 image."""
    return x[0].clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad the bottom and right edges by replication to multiples of ``multiple``."""
    height, width = x.shape[-2:]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")


def as_image_tensor(image) -> torch.Tensor:
    """uint8/float arrays (H, W, C) or tensors (N, C, H, W) in [0, 255] -> float tensor NCHW."""
    if isinstance(image, torch.Tensor):
        tensor = image.float()
        if tensor.ndim == 3:
            tensor = tensor.unsqueeze(0)
        return tensor
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3:
        raise ImgcompError(f"expected an (H, W, C) image, got shape {array.shape}")
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).permute(2, 0, 1)[None]


def check_image_pair(a: torch.Tensor, b: torch.Tensor) -> None:
    """Two images of one shape, not empty (else :class:`ImgcompError`)."""
    if a.shape != b.shape:
        raise ImgcompError(f"images differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    if a.numel() == 0:
        raise ImgcompError("empty image")
