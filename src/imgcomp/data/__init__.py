"""Data: folders of images, the offline training/validation sets, checksummed downloads, loaders.

* :func:`list_images` - the PNG/JPEG files of a folder (any such folder is a data set).
* :func:`prepare_dataset` - ``imgcomp data prepare``: photos from Debian packages + scikit-image.
* :func:`download_verified`, :func:`download_kodak` - downloads checked against SHA-256.
* :class:`RandomCropDataset`, :func:`make_train_loader`, :class:`ValidationImages`,
  :func:`make_val_loader` - the PyTorch training and validation pipeline.

The torch-based pipeline is imported lazily so that the command line stays fast to start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from imgcomp.data.download import download_verified
from imgcomp.data.folder import IMAGE_SUFFIXES, list_images
from imgcomp.data.kodak import KODAK_FILES, download_kodak

if TYPE_CHECKING:
    from imgcomp.data.dataset import (
        CropSampler,
        RandomCropDataset,
        ValidationImages,
        make_train_loader,
        make_val_loader,
    )
    from imgcomp.data.prepare import PrepareReport, prepare_dataset

_LAZY = {
    "CropSampler": "imgcomp.data.dataset",
    "RandomCropDataset": "imgcomp.data.dataset",
    "ValidationImages": "imgcomp.data.dataset",
    "make_train_loader": "imgcomp.data.dataset",
    "make_val_loader": "imgcomp.data.dataset",
    "PrepareReport": "imgcomp.data.prepare",
    "prepare_dataset": "imgcomp.data.prepare",
}

__all__ = [
    "IMAGE_SUFFIXES",
    "KODAK_FILES",
    "CropSampler",
    "PrepareReport",
    "RandomCropDataset",
    "ValidationImages",
    "download_kodak",
    "download_verified",
    "list_images",
    "make_train_loader",
    "make_val_loader",
    "prepare_dataset",
]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'imgcomp.data' has no attribute {name!r}")
