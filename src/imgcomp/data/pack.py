"""A travelling training set: random square crops of a training pool, within a size budget.

A lent GPU machine gets only what travels with the working tree (64 MiB in all, code and wheels
included), so ``imgcomp data pack`` draws random ``crop`` x ``crop`` crops of the training images
(each image chosen with probability proportional to its area, a random horizontal flip; an image
smaller than ``crop`` but at least ``min_size`` on each side gives crops of its own height or
width, so the 256-px photos of the pool count too) and
stores them as high-quality JPEG (4:4:4, no chroma subsampling) or PNG until the next crop would
pass ``max_bytes``. ``manifest.json`` records every crop's source file, box, flip and SHA-256 (and
the pool's own manifest entries, for licenses), so the packed set is reproducible from the pool
and the seed.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from PIL import Image

from imgcomp.data.folder import data_set_images
from imgcomp.errors import ImgcompError
from imgcomp.io import load_image

MANIFEST = "manifest.json"
FORMATS = {"jpeg": ".jpg", "png": ".png"}


@dataclass
class PackReport:
    out: Path
    crops: int
    total_bytes: int
    sources: int


def _encode(patch: np.ndarray, fmt: str, quality: int) -> bytes:
    buffer = io.BytesIO()
    image = Image.fromarray(patch)
    if fmt == "jpeg":
        image.save(buffer, format="JPEG", quality=quality, subsampling=0, optimize=True)
    else:
        image.save(buffer, format="PNG", optimize=False, compress_level=9)
    return buffer.getvalue()


def _pool_manifest(folders: list[Path]) -> dict[str, dict]:
    """Entries of the pools' ``manifest.json`` (from ``imgcomp data prepare``) by file name."""
    entries: dict[str, dict] = {}
    for folder in folders:
        for candidate in (folder / MANIFEST, folder.parent / MANIFEST):
            if not candidate.is_file():
                continue
            try:
                document = json.loads(candidate.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            files = document.get("files", document.get("images", [])) if isinstance(document, dict) else []
            for entry in files if isinstance(files, list) else []:
                if isinstance(entry, dict):
                    name = entry.get("path") or entry.get("file") or entry.get("name")
                    if name:
                        entries.setdefault(Path(str(name)).name, entry)
            break
    return entries


def pack_training_set(
    sources: list[str | os.PathLike], out: str | os.PathLike, max_bytes: int, crop: int = 320,
    fmt: str = "jpeg", quality: int = 95, seed: int = 0, max_crops: Optional[int] = None,
    min_size: Optional[int] = None,
    force: bool = False, on_progress: Callable[[int, int], None] | None = None,
) -> PackReport:
    """Write random crops of the images in ``sources`` into ``out`` until ``max_bytes`` is used."""
    if fmt not in FORMATS:
        raise ImgcompError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if not 1 <= quality <= 100 or crop < 16 or max_bytes <= 0:
        raise ImgcompError("quality must be 1-100, crop >= 16 and the budget positive")
    folders = [Path(s) for s in sources]
    paths = [p for folder in folders for p in data_set_images(folder)]
    if not paths:
        raise ImgcompError(f"no training images in {', '.join(map(str, folders))}")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not force:
            raise ImgcompError(f"{out}: exists and is not empty (use --force to replace it)")
        for old in out.iterdir():
            if old.is_file() and (old.suffix in FORMATS.values() or old.name == MANIFEST):
                old.unlink()
    out.mkdir(parents=True, exist_ok=True)
    min_size = min(crop, 256) if min_size is None else min_size
    images = []
    for path in paths:
        image = load_image(path)
        if min(image.shape[:2]) >= min_size:
            images.append((path, image))
    if not images:
        raise ImgcompError(f"every training image is smaller than {min_size}px")
    areas = np.array([image.shape[0] * image.shape[1] for _, image in images], dtype=np.float64)
    rng = np.random.default_rng(seed)
    pool_entries = _pool_manifest(folders)
    entries, total = [], 0
    limit = max_crops if max_crops is not None else 1_000_000
    while len(entries) < limit:
        index = int(rng.choice(len(images), p=areas / areas.sum()))
        path, image = images[index]
        height, width = min(crop, image.shape[0]), min(crop, image.shape[1])
        top = int(rng.integers(image.shape[0] - height + 1))
        left = int(rng.integers(image.shape[1] - width + 1))
        flip = bool(rng.integers(2))
        patch = image[top : top + height, left : left + width]
        if flip:
            patch = patch[:, ::-1]
        data = _encode(np.ascontiguousarray(patch), fmt, quality)
        if total + len(data) > max_bytes:
            break
        name = f"crop{len(entries):05d}{FORMATS[fmt]}"
        (out / name).write_bytes(data)
        total += len(data)
        entries.append({
            "file": name, "source": str(path), "box": [left, top, width, height], "flip": flip,
            "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
        })
        if on_progress is not None:
            on_progress(total, max_bytes)
    if not entries:
        raise ImgcompError(f"not even one crop fits in {max_bytes} bytes")
    used = sorted({e["source"] for e in entries})
    manifest = {
        "kind": "imgcomp packed training crops",
        "crop": crop, "min_size": min_size, "format": fmt, "quality": quality if fmt == "jpeg" else None, "seed": seed,
        "max_bytes": max_bytes, "total_bytes": total,
        "sources": [{"path": s, **({"provenance": pool_entries[Path(s).name]} if Path(s).name in pool_entries else {})} for s in used],
        "files": entries,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return PackReport(out, len(entries), total, len(used))
