"""Folders of images: the one data-set format every imgcomp command accepts.

A data set is a folder of image files: PNG or JPEG (``.png``, ``.jpg``, ``.jpeg``), also WebP, TIFF,
BMP and PPM (any case). A training set may also be a ``.txt`` list of image paths, where an image
listed twice is sampled twice as often (:func:`data_set_images`).
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


LIST_SUFFIX = ".txt"


def read_image_list(path: str | os.PathLike) -> list[Path]:
    """The images named by a list file: one path per line, relative to the file's folder (or
    absolute); blank lines and lines starting with ``#`` are skipped. A path may appear several
    times: a training set samples it that many times as often (weighting, e.g. the
    ``train-mixed.txt`` that ``imgcomp data prepare`` writes). Raises :class:`ImgcompError` if a
    listed file is missing or not an image, or if the list names none."""
    source = Path(path)
    try:
        lines = source.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ImgcompError(f"{source}: cannot read the image list ({exc})") from None
    images = []
    for number, line in enumerate(lines, 1):
        name = line.strip()
        if not name or name.startswith("#"):
            continue
        image = Path(name) if Path(name).is_absolute() else source.parent / name
        if image.suffix.lower() not in IMAGE_SUFFIXES:
            raise ImgcompError(f"{source}, line {number}: {name} is not a PNG or JPEG image")
        if not image.is_file():
            raise ImgcompError(f"{source}, line {number}: {image}: no such file")
        images.append(image)
    if not images:
        raise ImgcompError(f"{source}: the image list names no image")
    return images


def data_set_images(source: str | os.PathLike) -> list[Path]:
    """A training data set given as a folder (:func:`list_images`) or as a ``.txt`` list file
    (:func:`read_image_list`)."""
    path = Path(source)
    if path.suffix.lower() == LIST_SUFFIX and not path.is_dir():
        if not path.is_file():
            raise ImgcompError(f"{path}: no such image list")
        return read_image_list(path)
    return list_images(path)
