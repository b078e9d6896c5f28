"""PyTorch pipeline: random training crops and whole validation images from a folder.

Tensors are float32 ``(C, H, W)`` on the 0-255 scale (models normalise their input themselves).

Training. :class:`RandomCropDataset` decodes every image once into memory as uint8 (the prepared
training set is 51 photos, 70 MB decoded; worker processes share it through fork) and cuts a random
crop with a random horizontal flip (and, optionally, vertical flip) per sample. Images smaller than
the crop are reflect-padded up to it by default (``small_images="pad"``) or left out
(``"skip"``). The randomness of a sample comes only from a seed that :class:`CropSampler` hands
out with its index, drawn from a ``torch.Generator`` in the main process, so a loader's batches
depend on ``seed`` alone: the same with 0 or 2 worker processes, and on every rank of a DDP job
each rank gets its own share of one global draw (``rank``/``world_size``). Each pass over the
loader is a new epoch with new crops; ``sampler.set_epoch(n)`` jumps to epoch ``n`` (for resuming).

Validation. :class:`ValidationImages` yields ``(image, name)`` for every image of a folder in
sorted order, whole or centre-cropped, always the same.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from imgcomp.data.folder import data_set_images
from imgcomp.errors import ImgcompError
from imgcomp.io import load_image

ImagesArg = str | os.PathLike | Sequence[str | os.PathLike]
CropSize = int | tuple[int, int]
SmallImages = Literal["pad", "skip"]


def _paths(images: ImagesArg) -> list[Path]:
    if isinstance(images, (str, os.PathLike)):
        return data_set_images(images)
    paths = [Path(path) for path in images]
    if not paths:
        raise ImgcompError("no images given")
    return paths


def _crop_shape(crop_size: CropSize) -> tuple[int, int]:
    height, width = (crop_size, crop_size) if isinstance(crop_size, int) else crop_size
    if height < 1 or width < 1:
        raise ImgcompError(f"crop size must be positive, got {crop_size}")
    return int(height), int(width)


def _to_tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).float()


def _image_size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as image:
            return image.height, image.width
    except OSError:
        return load_image(path).shape[:2]  # for its clear error message


def pad_to(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Reflect-pad an ``(H, W, C)`` image (centred) so it is at least ``height`` x ``width``."""
    pad_h, pad_w = max(0, height - image.shape[0]), max(0, width - image.shape[1])
    if pad_h == 0 and pad_w == 0:
        return image
    mode = "reflect" if min(image.shape[:2]) > 1 else "edge"  # reflect needs two pixels
    padding = ((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0))
    return np.pad(image, padding, mode=mode)


class RandomCropDataset(Dataset):
    """Random crops of a folder's images (or a list of image files, or a ``.txt`` list file where
    repeats weight an image), decoded once and cached.

    Index with ``(image_index, sample_seed)`` as :class:`CropSampler` yields: the crop position
    and flips come from ``numpy.random.default_rng(sample_seed)``. A plain integer index uses
    numpy's global generator instead (seeded per worker by :func:`seed_worker`).
    """

    def __init__(
        self,
        images: ImagesArg,
        crop_size: CropSize = 128,
        *,
        vertical_flip: bool = False,
        small_images: SmallImages = "pad",
        cache: bool = True,
    ) -> None:
        if small_images not in ("pad", "skip"):
            raise ImgcompError(f"small_images must be 'pad' or 'skip', got {small_images!r}")
        self.crop_height, self.crop_width = _crop_shape(crop_size)
        self.vertical_flip = vertical_flip
        paths = _paths(images)
        if cache:  # a path listed several times (a weighted list file) is decoded once
            decoded: dict[Path, np.ndarray] = {}
            arrays = [decoded[path] if path in decoded else decoded.setdefault(path, load_image(path)) for path in paths]
        else:
            arrays = None
        if small_images == "skip":
            sizes = [a.shape[:2] for a in arrays] if arrays is not None else map(_image_size, paths)
            keep = [h >= self.crop_height and w >= self.crop_width for h, w in sizes]
            paths = [path for path, kept in zip(paths, keep, strict=True) if kept]
            arrays = (
                [a for a, kept in zip(arrays, keep, strict=True) if kept]
                if arrays is not None
                else None
            )
            if not paths:
                raise ImgcompError(
                    f"no image is at least {self.crop_width}x{self.crop_height} (the crop size)"
                )
        self.paths = paths
        self._arrays = arrays

    def __len__(self) -> int:
        return len(self.paths)

    def image(self, index: int) -> np.ndarray:
        """The decoded ``(H, W, 3)`` uint8 image ``index``."""
        return self._arrays[index] if self._arrays is not None else load_image(self.paths[index])

    def __getitem__(self, item: int | tuple[int, int]) -> torch.Tensor:
        if isinstance(item, tuple):
            index, seed = item
            rng = np.random.default_rng(seed)
        else:
            index, rng = item, np.random.default_rng(np.random.randint(0, 2**32, dtype=np.int64))
        return _to_tensor(self.random_crop(self.image(index), rng))

    def random_crop(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One crop of ``image`` with random position and flips, drawn from ``rng``."""
        image = pad_to(image, self.crop_height, self.crop_width)
        top = int(rng.integers(0, image.shape[0] - self.crop_height + 1))
        left = int(rng.integers(0, image.shape[1] - self.crop_width + 1))
        patch = image[top : top + self.crop_height, left : left + self.crop_width]
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
        if self.vertical_flip and rng.random() < 0.5:
            patch = patch[::-1]
        return patch


class CropSampler(Sampler):
    """Yields ``(image_index, sample_seed)`` pairs; each ``iter()`` is the next epoch.

    An epoch has ``samples_per_epoch`` samples in all (over every rank); images are drawn as
    concatenated random permutations so each appears equally often. With ``world_size > 1``,
    rank ``r`` gets samples ``r, r + world_size, ...`` of one draw that all ranks make alike
    (the total is rounded up so every rank gets the same number, as DDP needs).
    """

    def __init__(
        self,
        num_images: int,
        samples_per_epoch: int | None = None,
        *,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if num_images < 1:
            raise ImgcompError("the sampler needs at least one image")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ImgcompError(f"invalid rank {rank} for world size {world_size}")
        total = samples_per_epoch if samples_per_epoch is not None else num_images
        if total < 1:
            raise ImgcompError(f"samples_per_epoch must be positive, got {total}")
        self.num_images = num_images
        self.num_samples = math.ceil(total / world_size)  # per rank
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Make the next ``iter()`` produce epoch ``epoch``."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[tuple[int, int]]:
        generator = torch.Generator()
        generator.manual_seed(
            int(np.random.SeedSequence([self.seed, self.epoch]).generate_state(1)[0])
        )
        self.epoch += 1
        total = self.num_samples * self.world_size
        rounds = math.ceil(total / self.num_images)
        order = torch.cat(
            [torch.randperm(self.num_images, generator=generator) for _ in range(rounds)]
        )
        seeds = torch.randint(0, 2**62, (total,), generator=generator)
        for position in range(self.rank, total, self.world_size):
            yield int(order[position]), int(seeds[position])


def seed_worker(worker_id: int) -> None:
    """``worker_init_fn``: seed numpy and ``random`` from the worker's torch seed."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def make_train_loader(
    folder: ImagesArg,
    crop_size: CropSize = 128,
    batch_size: int = 8,
    workers: int = 0,
    seed: int = 0,
    *,
    samples_per_epoch: int | None = None,
    vertical_flip: bool = False,
    small_images: SmallImages = "pad",
    rank: int = 0,
    world_size: int = 1,
    cache: bool = True,
    pin_memory: bool = False,
) -> DataLoader:
    """Batches ``(batch_size, 3, H, W)`` of random crops, deterministic given ``seed``.

    ``samples_per_epoch`` (over all ranks) defaults to the number of images rounded up to whole
    batches on every rank; incomplete batches are dropped. Under DDP pass ``rank`` and
    ``world_size``: each rank gets distinct samples of the same global draw.
    """
    if batch_size < 1:
        raise ImgcompError(f"batch size must be positive, got {batch_size}")
    dataset = RandomCropDataset(
        folder, crop_size, vertical_flip=vertical_flip, small_images=small_images, cache=cache
    )
    per_step = batch_size * world_size
    if samples_per_epoch is None:
        samples_per_epoch = math.ceil(len(dataset) / per_step) * per_step
    elif samples_per_epoch < per_step:
        raise ImgcompError(
            f"samples_per_epoch ({samples_per_epoch}) gives no full batch of {batch_size} "
            f"on each of {world_size} rank(s)"
        )
    sampler = CropSampler(
        len(dataset), samples_per_epoch, seed=seed, rank=rank, world_size=world_size
    )
    generator = torch.Generator()
    generator.manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        worker_init_fn=seed_worker,
        generator=generator,
        drop_last=True,
        persistent_workers=workers > 0,
        pin_memory=pin_memory,
    )


class ValidationImages(Dataset):
    """Every image of a folder as ``(tensor, file name)``, in sorted order.

    ``center_crop`` (an int or ``(height, width)``) cuts the centre of each image to at most that
    size (a smaller side stays as it is); without it images are whole. ``rank``/``world_size``
    give each DDP rank every ``world_size``-th image (shares may differ by one).
    """

    def __init__(
        self,
        folder: ImagesArg,
        center_crop: CropSize | None = None,
        *,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ImgcompError(f"invalid rank {rank} for world size {world_size}")
        self.paths = _paths(folder)[rank::world_size]
        self.crop = _crop_shape(center_crop) if center_crop is not None else None

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str]:
        image = load_image(self.paths[index])
        if self.crop is not None:
            height, width = min(self.crop[0], image.shape[0]), min(self.crop[1], image.shape[1])
            top, left = (image.shape[0] - height) // 2, (image.shape[1] - width) // 2
            image = image[top : top + height, left : left + width]
        return _to_tensor(image), self.paths[index].name


def make_val_loader(
    folder: ImagesArg,
    center_crop: CropSize | None = None,
    workers: int = 0,
    *,
    rank: int = 0,
    world_size: int = 1,
) -> DataLoader:
    """One image per batch: ``(1, 3, H, W)`` tensors and a one-element list of file names."""
    dataset = ValidationImages(folder, center_crop, rank=rank, world_size=world_size)
    return DataLoader(dataset, batch_size=1, shuffle=False, num_workers=workers)
