"""Folders of images: the one data-set format every imgcomp command accepts.

A data set is a folder of image files: PNG or JPEG (``.png``, ``.jpg``, ``.jpeg``), also WebP, TIFF,
BMP and PPM (any case).
Listing is **not recursive** by default, so ``data/`` (which holds ``train/`` and ``val/``) is never
mistaken for a training set; pass ``recursive=True`` for nested layouts (e.g. CLIC). Hidden files
and folders (a leading dot, as used by temporary files) are ignored. The order is sorted by the
path relative to the folder, so it is the same on every machine.
"""

from __future__ import annotations

import os
from pathlib import Path

from imgcomp.errors import ImgcompError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".ppm"})


def list_images(folder: str | os.PathLike, *, recursive: bool = False) -> list[Path]:
    """The PNG/JPEG files in ``folder``, sorted; raises :class:`ImgcompError` if there are none."""
    root = Path(folder)
    if not root.exists():
        raise ImgcompError(f"{root}: no such folder")
    if not root.is_dir():
        raise ImgcompError(f"{root}: not a folder (expected a folder of PNG/JPEG images)")
    candidates = root.rglob("*") if recursive else root.iterdir()
    images = []
    for path in candidates:
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            images.append(path)
    if not images:
        where = "in it or its subfolders" if recursive else "in it (subfolders are not searched)"
        raise ImgcompError(f"{root}: no PNG or JPEG images {where}")
    return sorted(images, key=lambda path: path.relative_to(root).as_posix())
