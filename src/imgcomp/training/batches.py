"""Training batches as a pure function of ``(seed, step)``, so resumed runs continue exactly.

Every training example ``j`` of step ``s`` is a random crop (with a random horizontal flip) of a
random training image, all drawn from ``numpy.random.default_rng([seed, s, j])`` by
:class:`imgcomp.data.RandomCropDataset` (which decodes each image once and keeps it in memory).
Rank ``r`` of ``w`` DDP processes takes examples ``r*B/w .. (r+1)*B/w`` of every step.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from imgcomp.data.dataset import RandomCropDataset
from imgcomp.data.folder import data_set_images, list_images
from imgcomp.errors import ImgcompError
from imgcomp.io import load_image

STATISTICS_IMAGES = 16


class _StepCrops(Dataset):
    def __init__(self, crops: RandomCropDataset, per_rank: int, seed: int, rank: int):
        self.crops, self.per_rank, self.seed, self.rank = crops, per_rank, seed, rank

    def __len__(self) -> int:  # indexed by step; the sampler decides which steps
        return 2**62

    def example(self, step: int, index: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, step, index])
        image = self.crops.image(int(rng.integers(len(self.crops))))
        return self.crops.random_crop(image, rng)

    def __getitem__(self, step: int) -> torch.Tensor:
        first = self.rank * self.per_rank
        patches = [self.example(step, first + j) for j in range(self.per_rank)]
        batch = np.stack(patches).transpose(0, 3, 1, 2)
        return torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))


class StepBatches:
    """Iterates ``(step, batch)`` for ``step`` in ``[start, stop)``, float NCHW on 0-255."""

    def __init__(
        self, folder: str, crop: int, batch_size: int, seed: int, workers: int = 1,
        rank: int = 0, world_size: int = 1,
    ) -> None:
        if batch_size % world_size:
            raise ImgcompError(f"batch size {batch_size} is not divisible by {world_size} processes")
        crops = RandomCropDataset(folder, crop, small_images="skip")
        listed = len(data_set_images(folder))
        if len(crops) < listed:
            raise ImgcompError(f"{listed - len(crops)} training images are smaller than the {crop}px crop")
        self.dataset = _StepCrops(crops, batch_size // world_size, seed, rank)
        self.workers = workers
        self._loader: DataLoader | None = None

    def iterate(self, start: int, stop: int) -> Iterator[tuple[int, torch.Tensor]]:
        steps = range(start, stop)
        self._loader = DataLoader(
            self.dataset, batch_size=None, sampler=steps, num_workers=self.workers,
            persistent_workers=False, prefetch_factor=4 if self.workers else None,
        )
        return zip(steps, self._loader)

    def close(self) -> None:
        self._loader = None


def input_statistics(folder: str) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation (0-255 scale) over the first training images;
    the model's fixed input normalisation (Mentzer et al. 2018, Fig. 2, "Normalize")."""
    paths = data_set_images(folder)[:STATISTICS_IMAGES]
    pixels = np.concatenate([load_image(p).reshape(-1, 3)[::7] for p in paths]).astype(np.float64)
    return [round(float(v), 3) for v in pixels.mean(0)], [round(float(v), 3) for v in pixels.std(0)]


def load_validation_images(folder: str, limit: int | None = None) -> list[np.ndarray]:
    """The first ``limit`` validation images (all if None), centre-cropped to multiples of 8."""
    images = []
    for path in list_images(folder)[:limit]:
        image = load_image(path)
        height, width = (image.shape[0] // 8) * 8, (image.shape[1] // 8) * 8
        top, left = (image.shape[0] - height) // 2, (image.shape[1] - width) // 2
        images.append(image[top : top + height, left : left + width])
    return images
