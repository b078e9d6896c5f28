"""What a GPU is good at, for the GPU job (:mod:`imgcomp.systems.mentzer2018.gpu_job`); no-ops on a CPU.

* :func:`setup_backends`: cuDNN autotuning; TF32 for matrix products only. Convolutions stay in
  full fp32 where they run in fp32: MS-SSIM's local variances ``E[x^2] - E[x]^2`` on the 0-255
  scale cancel catastrophically at TF32's 10-bit mantissa.
* :func:`prepare_model`: E and D in ``channels_last`` and, on CUDA, under bf16 autocast; their
  outputs (the latent and importance logits, the reconstruction), the quantizer, the context
  model P (so the coding cost ``-log2 P``) and the losses in fp32. The decoder's last layer, which
  makes the 0-255 reconstruction MS-SSIM compares, runs in fp32 too.
* :class:`DeviceCrops`: the whole (packed) training set decoded once into device memory as uint8;
  each step's random crops and flips are one gather on the device, so the GPU never waits for a
  data loader.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import numpy as np
import torch

from imgcomp.data.folder import list_images
from imgcomp.errors import ImgcompError
from imgcomp.io import load_image


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ImgcompError("--device cuda: no CUDA device here")
    return device


def setup_backends(device: torch.device) -> None:
    """cuDNN autotuning and TF32 matrix products on CUDA; nothing on a CPU."""
    if device.type != "cuda":
        return
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = False  # see the module docstring (MS-SSIM in fp32)


def autocast(device: torch.device, enabled: bool = True):
    """bf16 autocast on CUDA; a null context elsewhere (CPU runs stay in fp32)."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _float_outputs(module: torch.nn.Module) -> None:
    """``module``'s outputs in fp32 (it may compute in bf16 under autocast)."""
    inner = module.forward

    @functools.wraps(inner)
    def forward(*args, **kwargs):
        return inner(*args, **kwargs).float()

    module.forward = forward


def _in_fp32(module: torch.nn.Module, device_type: str) -> None:
    """``module`` computes in fp32 even inside an autocast region."""
    inner = module.forward

    @functools.wraps(inner)
    def forward(*args, **kwargs):
        args = tuple(a.float() if torch.is_tensor(a) and a.is_floating_point() else a for a in args)
        with torch.autocast(device_type, enabled=False):
            return inner(*args, **kwargs)

    module.forward = forward


def prepare_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Move ``model`` to ``device``, E and D to channels_last, and pin the fp32 parts (see module
    docstring). The wrappers live on the instance only: ``state_dict`` and exports are unchanged."""
    model.to(device)
    for network in (model.encoder, model.decoder):
        network.to(memory_format=torch.channels_last)
    _float_outputs(model.encoder)
    _float_outputs(model.decoder)
    _in_fp32(model.decoder[-1], device.type)
    _in_fp32(model.context_model, device.type)
    return model


class DeviceCrops:
    """All training images in device memory (uint8, padded to the largest size); random crops
    with random horizontal flips drawn by one generator, as one gather per batch."""

    def __init__(self, folder: str | Path, crop: int, device: torch.device, seed: int = 0,
                 max_images: int | None = None) -> None:
        paths = list_images(folder)[:max_images]
        images = [load_image(p) for p in paths]
        images = [im for im in images if min(im.shape[:2]) >= crop]
        if not images:
            raise ImgcompError(f"{folder}: no training image is at least {crop}px on both sides")
        height = max(im.shape[0] for im in images)
        width = max(im.shape[1] for im in images)
        data = np.zeros((len(images), height, width, 3), dtype=np.uint8)
        for i, im in enumerate(images):
            data[i, : im.shape[0], : im.shape[1]] = im
        self.crop, self.device = crop, device
        self.data = torch.from_numpy(data).to(device)  # (N, H, W, 3) uint8
        self.sizes = torch.tensor([im.shape[:2] for im in images], device=device)  # (N, 2)
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(seed)
        self._offsets = torch.arange(crop, device=device)
        self.nbytes = data.nbytes

    def __len__(self) -> int:
        return self.data.shape[0]

    def batch(self, batch_size: int) -> torch.Tensor:
        """``(batch_size, 3, crop, crop)`` float32 on 0-255, channels_last."""
        g, crop, ar = self.generator, self.crop, self._offsets
        index = torch.randint(len(self), (batch_size,), device=self.device, generator=g)
        room = self.sizes[index] - crop + 1  # (B, 2) positions each image allows
        corner = (torch.rand((batch_size, 2), device=self.device, generator=g) * room).long()
        flip = torch.rand((batch_size,), device=self.device, generator=g) < 0.5
        rows = corner[:, :1] + ar  # (B, crop)
        cols = corner[:, 1:] + torch.where(flip[:, None], crop - 1 - ar, ar)
        patch = self.data[index[:, None, None], rows[:, :, None], cols[:, None, :]]  # (B, crop, crop, 3)
        # NHWC memory viewed as NCHW is exactly channels_last.
        return patch.permute(0, 3, 1, 2).float()
