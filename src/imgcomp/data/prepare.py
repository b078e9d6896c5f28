"""``imgcomp data prepare``: build ``train/``, ``val/`` and ``val-textured/`` from :mod:`.sources`.

Processing, fixed so the result is reproducible:

* **train** (recipe ``train-v1``): the sources are mostly JPEGs, so each photo is downscaled with
  Lanczos to remove compression artefacts, by a factor of 2, or less where a factor of 2 would take
  the short side under 256 pixels: the factor is ``min(2, short_side / 256)``. Small sources
  (OpenCV's 512x384 photos) therefore end with a 256-pixel short side, never less; an image whose
  short side is under 256 before scaling is dropped. Saved as PNG.
* **train**, the photo pool added for issue 19 (recipe ``pool-v1``): Lanczos downscale so that
  JPEG artefacts and sensor noise vanish and the pool stays small: a JPEG source (or a game's
  DXT-compressed ``.dds`` texture, whose 4x4 blocks are as lossy) by a factor of at least 2 (less
  only where 2 would take the short side under 256, as in ``train-v1``), a lossless source by at
  least 1, and either by more where needed to bring the short side to 768 at most. Dropped if the
  short side is under 256 to begin with. RGB PNG.
* **val** and **val-textured** (recipe ``val-v1``): short side scaled to 512 with Lanczos, long side
  centre-cropped to at most 768 (Kodak's size), PNG. Images with a short side under 512 are dropped
  (no upscaling). ``val-textured`` also drops pictures whose texture score is under its group's
  ``min_texture``.

Near-duplicates are dropped from ``train`` and ``val-textured`` (together, so that no validation
photo is a copy of a training one): an output whose 64-bit difference hash
(:func:`image_signature`) is within :data:`DUPLICATE_DISTANCE` bits of one kept before it, in
source order, is dropped and reported.

Alpha channels (two sources have an opaque or nearly opaque one) are dropped silently.

Rerunning is cheap: a file is skipped when its manifest entry names the same source and recipe
and its SHA-256 still matches; a package is fetched only if one of its files needs (re)building.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
import zipfile
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from imgcomp.io import file_sha256
from imgcomp.data.folder import IMAGE_SUFFIXES
from imgcomp.data.licenses import LicenseInfo, find_license
from imgcomp.data.manifest import Manifest, ManifestEntry, read_manifest, write_manifest
from imgcomp.data.packages import ExtractedPackage, Fetcher, PackageFetcher
from imgcomp.data.sources import (
    MIXED_PHOTO_WEIGHT,
    POOL_SOURCES,
    TEXTURE_PACKAGES,
    TRAIN_SOURCES,
    VAL_SOURCES,
    VAL_TEXTURED_SOURCES,
    ImageGroup,
)
from imgcomp.errors import ImgcompError
from imgcomp.io import load_image, save_image

TRAIN_MIN_SIDE = 256
TRAIN_MAX_DOWNSCALE = 2.0
VAL_SHORT_SIDE = 512
VAL_MAX_LONG_SIDE = 768
POOL_MAX_SHORT_SIDE = 768
POOL_LOSSY_DOWNSCALE = 2.0
LOSSY_SUFFIXES = (".jpg", ".jpeg", ".dds")  # JPEG, and DXT-compressed game textures
DUPLICATE_DISTANCE = 6  # bits out of 64
DEDUP_SPLITS = ("train", "val-textured")
ARCHIVE_SEPARATOR = "!"

PROCESSING = {
    "train-v1": (
        f"Lanczos downscale by min({TRAIN_MAX_DOWNSCALE:g}, short_side/{TRAIN_MIN_SIDE}); "
        f"dropped if short side < {TRAIN_MIN_SIDE}; RGB PNG"
    ),
    "pool-v1": (
        f"Lanczos downscale by max(f, short_side/{POOL_MAX_SHORT_SIDE}) where f = "
        f"min({POOL_LOSSY_DOWNSCALE:g}, short_side/{TRAIN_MIN_SIDE}) for JPEG and DXT (.dds) "
        f"sources, 1 for lossless ones; dropped if short side < {TRAIN_MIN_SIDE}; RGB PNG"
    ),
    "val-v1": (
        f"Lanczos scale of the short side to {VAL_SHORT_SIDE}, centre crop of the long side to at "
        f"most {VAL_MAX_LONG_SIDE}; dropped if short side < {VAL_SHORT_SIDE}; RGB PNG"
    ),
}
# Steps named before a recipe in a manifest's "processing" ("rotate90+val-v1").
PROCESSING.update(
    {
        f"rotate{degrees}": f"turned {degrees} degrees clockwise first (the package shows it so)"
        for degrees in (90, 180, 270)
    }
)
RECIPE_FOR_SPLIT = {"train": "train-v1", "val": "val-v1", "val-textured": "val-v1"}


def downscale_for_training(image: np.ndarray) -> np.ndarray | None:
    """Recipe ``train-v1``; None when the image is too small to keep."""
    height, width = image.shape[:2]
    short = min(height, width)
    if short < TRAIN_MIN_SIDE:
        return None
    factor = min(TRAIN_MAX_DOWNSCALE, short / TRAIN_MIN_SIDE)
    size = (max(TRAIN_MIN_SIDE, round(width / factor)), max(TRAIN_MIN_SIDE, round(height / factor)))
    return _resize(image, size)


def downscale_for_pool(image: np.ndarray, *, lossy: bool) -> np.ndarray | None:
    """Recipe ``pool-v1``; None when the image is too small to keep.

    ``lossy``: the source was a JPEG (or DXT) file, so it is downscaled by 2 (or as close to 2 as
    the 256-pixel floor allows) to wash out its block artefacts and noise; any source whose short
    side would stay above 768 is downscaled further.
    """
    height, width = image.shape[:2]
    short = min(height, width)
    if short < TRAIN_MIN_SIDE:
        return None
    factor = min(POOL_LOSSY_DOWNSCALE, short / TRAIN_MIN_SIDE) if lossy else 1.0
    factor = max(factor, short / POOL_MAX_SHORT_SIDE)
    size = (max(TRAIN_MIN_SIDE, round(width / factor)), max(TRAIN_MIN_SIDE, round(height / factor)))
    return _resize(image, size)


def image_signature(image: np.ndarray) -> int:
    """64-bit difference hash: signs of horizontal steps of a 9x8 box-filtered grey thumbnail.

    Robust to rescaling, recompression and small colour changes, so near-duplicates (one photo
    at two sizes, a photo and its lightly edited copy) land within a few bits of each other.
    """
    grey = Image.fromarray(image, "RGB").convert("L").resize((9, 8), Image.Resampling.BOX)
    pixels = np.asarray(grey, dtype=np.int16)
    bits = (pixels[:, 1:] > pixels[:, :-1]).flatten()
    return int("".join("1" if bit else "0" for bit in bits), 2)


def signature_distance(a: int, b: int) -> int:
    """Hamming distance between two signatures."""
    return (a ^ b).bit_count()


def texture_score(image: np.ndarray) -> float:
    """Mean absolute luma step between neighbouring pixels (0-255 scale), both directions.

    Smooth wallpapers score about 1-3, ordinary photos 4-12, foliage and gravel more.
    """
    luma = image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    across = np.abs(np.diff(luma, axis=1)).mean()
    down = np.abs(np.diff(luma, axis=0)).mean()
    return float((across + down) / 2)


def jpeg_bpp(image: np.ndarray, quality: int = 75) -> float:
    """Bits per pixel of Pillow's baseline JPEG (4:2:0) at ``quality``: a texture indicator."""
    buffer = io.BytesIO()
    Image.fromarray(image, "RGB").save(buffer, format="JPEG", quality=quality)
    return 8 * buffer.tell() / (image.shape[0] * image.shape[1])


def crop_for_validation(image: np.ndarray) -> np.ndarray | None:
    """Recipe ``val-v1``; None when the image is too small (it would need upscaling)."""
    height, width = image.shape[:2]
    short = min(height, width)
    if short < VAL_SHORT_SIDE:
        return None
    scale = VAL_SHORT_SIDE / short
    if height <= width:
        size = (max(VAL_SHORT_SIDE, round(width * scale)), VAL_SHORT_SIDE)
    else:
        size = (VAL_SHORT_SIDE, max(VAL_SHORT_SIDE, round(height * scale)))
    resized = _resize(image, size)
    new_height, new_width = resized.shape[:2]
    crop_height, crop_width = (
        (VAL_SHORT_SIDE, min(new_width, VAL_MAX_LONG_SIDE))
        if new_height <= new_width
        else (min(new_height, VAL_MAX_LONG_SIDE), VAL_SHORT_SIDE)
    )
    top, left = (new_height - crop_height) // 2, (new_width - crop_width) // 2
    return np.ascontiguousarray(resized[top : top + crop_height, left : left + crop_width])


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if (image.shape[1], image.shape[0]) == size:
        return image
    resized = Image.fromarray(image, "RGB").resize(size, Image.Resampling.LANCZOS)
    return np.asarray(resized, dtype=np.uint8)


TRANSFORMS: dict[str, Callable[[np.ndarray], np.ndarray | None]] = {
    "train-v1": downscale_for_training,
    "val-v1": crop_for_validation,
}


def _transform(recipe: str, image: np.ndarray, source_path: str) -> np.ndarray | None:
    if recipe == "pool-v1":
        return downscale_for_pool(image, lossy=source_path.lower().endswith(LOSSY_SUFFIXES))
    return TRANSFORMS[recipe](image)


@dataclass
class PrepareReport:
    """What a ``prepare_dataset`` run did."""

    out_dir: Path
    manifest_path: Path
    counts: dict[str, int] = field(default_factory=dict)  # split -> files listed in the manifest
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already up to date
    dropped: list[tuple[str, str]] = field(default_factory=list)  # (source, reason)
    packages: dict[str, str] = field(default_factory=dict)  # fetched this run: name -> version
    seconds: float = 0.0


@dataclass(frozen=True)
class _Job:
    group: ImageGroup
    source_path: str
    output: str  # relative to the data folder, e.g. "train/mate-aqua.png"

    @property
    def recipe(self) -> str:
        return self.group.recipe or RECIPE_FOR_SPLIT[self.group.split]

    @property
    def rotation(self) -> int:
        return self.group.rotations.get(self.source_path, 0) % 360

    @property
    def processing(self) -> str:
        """The manifest's ``processing``: the recipe, after a rotation where there is one."""
        return f"rotate{self.rotation}+{self.recipe}" if self.rotation else self.recipe


ProgressCallback = Callable[[str, int, int], None]  # (message, done, total)


def prepare_dataset(
    out_dir: str | os.PathLike,
    *,
    fetcher: Fetcher | None = None,
    cache_dir: str | os.PathLike | None = None,
    sources: Iterable[ImageGroup] | None = None,
    force: bool = False,
    on_progress: ProgressCallback | None = None,
) -> PrepareReport:
    """Build ``out_dir/train``, ``out_dir/val``, ``out_dir/val-textured`` and the manifest.

    ``fetcher`` maps a package name to its extracted files (default: :class:`PackageFetcher` on
    ``cache_dir``); ``sources`` defaults to the allowlists of :mod:`imgcomp.data.sources`;
    ``force`` rebuilds every file. Raises :class:`ImgcompError` when a package cannot be fetched.
    """
    start = time.perf_counter()
    out = Path(out_dir)
    groups = (
        tuple(sources)
        if sources is not None
        else TRAIN_SOURCES + POOL_SOURCES + VAL_SOURCES + VAL_TEXTURED_SOURCES
    )
    fetcher = fetcher or PackageFetcher(cache_dir)
    jobs = _plan(groups)
    old = None if force else read_manifest(out)
    manifest = Manifest(processing=dict(PROCESSING))
    report = PrepareReport(out, out / "manifest.json")
    fetched: dict[str, ExtractedPackage] = {}
    progress = on_progress or (lambda message, done, total: None)

    # Near-duplicate check: outputs of DEDUP_SPLITS kept so far, in job order, with their
    # signatures (read from disk only when a new image has to be compared with them).
    kept: list[str] = []
    signatures: dict[str, int] = {}

    def accept(job: _Job, image: np.ndarray) -> str | None:
        if job.group.min_texture:
            score = texture_score(image)
            if score < job.group.min_texture:
                return f"too smooth (texture score {score:.2f} < {job.group.min_texture:g})"
        if job.group.split in DEDUP_SPLITS:
            signature = image_signature(image)
            for other in kept:
                if other not in signatures:
                    signatures[other] = image_signature(load_image(out / other))
                if signature_distance(signature, signatures[other]) <= DUPLICATE_DISTANCE:
                    return f"near-duplicate of {other}"
            signatures[job.output] = signature
        return None

    finished: set[str] = set()
    try:
        for done, job in enumerate(jobs):
            reused = _up_to_date(old, job, out)
            if reused is not None:
                _reuse(manifest, old, reused)
                report.skipped.append(job.output)
                if job.group.split in DEDUP_SPLITS:
                    kept.append(job.output)
            else:
                package = fetched.get(job.group.package)
                if package is None:
                    progress(f"fetching {job.group.package}", done, len(jobs))
                    package = fetched[job.group.package] = fetcher(job.group.package)
                    manifest.packages[package.name] = _package_record(package)
                    report.packages[package.name] = package.version
                    _warn_if_unreviewed(job.group, package)
                progress(f"processing {job.output}", done, len(jobs))
                entry = _build(job, package, out, report, accept)
                if entry is not None:
                    manifest.entries[job.output] = entry
                    report.written.append(job.output)
                    if job.group.split in DEDUP_SPLITS:
                        kept.append(job.output)
            finished.add(job.output)
            progress(job.output, done + 1, len(jobs))
    finally:
        # On an error or interrupt, keep the old entries of files not reached (the next run
        # checks them again), so that finished work is not redone.
        for job in jobs:
            if old is not None and job.output not in finished and job.output in old.entries:
                _reuse(manifest, old, old.entries[job.output])
        if manifest.entries or old is not None:
            out.mkdir(parents=True, exist_ok=True)
            write_manifest(out, manifest)

    for split in sorted({job.group.split for job in jobs}):
        report.counts[split] = sum(1 for entry in manifest.entries.values() if entry.split == split)
        _warn_about_unlisted(out / split, manifest)
    write_mixed_list(out, manifest)
    report.seconds = time.perf_counter() - start
    return report


MIXED_LIST = "train-mixed.txt"


def write_mixed_list(out: Path, manifest: Manifest) -> Path | None:
    """Write ``out/train-mixed.txt``: every ``train/`` image, a photograph
    :data:`~imgcomp.data.sources.MIXED_PHOTO_WEIGHT` times and a texture of
    :data:`~imgcomp.data.sources.TEXTURE_PACKAGES` once (a weighted training set for
    ``imgcomp train --data``; the shipped default was trained on it). None if there is no
    ``train/`` image."""
    train = sorted((entry for entry in manifest.entries.values() if entry.split == "train"), key=lambda e: e.path)
    if not train:
        return None
    lines = [
        f"# {MIXED_LIST}: the training images of manifest.json, each photograph {MIXED_PHOTO_WEIGHT} times and",
        "# each game texture once (imgcomp data prepare; use with imgcomp train --data)",
    ]
    for entry in train:
        lines += [entry.path] * (1 if entry.package in TEXTURE_PACKAGES else MIXED_PHOTO_WEIGHT)
    path = out / MIXED_LIST
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _plan(groups: tuple[ImageGroup, ...]) -> list[_Job]:
    jobs, outputs = [], set()
    for group in groups:
        for source_path, name in group.files.items():
            output = f"{group.split}/{name}"
            if output in outputs:
                raise ImgcompError(f"two sources would both be written to {output}")
            outputs.add(output)
            jobs.append(_Job(group, source_path, output))
    return jobs


def _up_to_date(old: Manifest | None, job: _Job, out: Path) -> ManifestEntry | None:
    if old is None:
        return None
    entry = old.entries.get(job.output)
    if (
        entry is None
        or entry.package != job.group.package
        or entry.original_path != job.source_path
        or entry.processing != job.processing
    ):
        return None
    path = out / job.output
    return entry if path.is_file() and file_sha256(path) == entry.sha256 else None


def _reuse(manifest: Manifest, old: Manifest, entry: ManifestEntry) -> None:
    manifest.entries[entry.path] = entry
    if entry.package in old.packages:
        manifest.packages.setdefault(entry.package, old.packages[entry.package])


def read_source(root: Path, source_path: str) -> bytes | None:
    """The bytes of ``source_path`` inside an extracted package; None if it is not there.

    ``ARCHIVE!MEMBER`` reads MEMBER from the zip archive ARCHIVE (e.g. a game's ``.pk3``).
    """
    archive, separator, member = source_path.partition(ARCHIVE_SEPARATOR)
    path = root / archive
    if not path.is_file():
        return None
    if not separator:
        return path.read_bytes()
    try:
        with zipfile.ZipFile(path) as bundle:
            return bundle.read(member)
    except KeyError:
        return None
    except (zipfile.BadZipFile, OSError) as exc:
        raise ImgcompError(f"{path}: unreadable archive ({exc})") from None


def _build(
    job: _Job,
    package: ExtractedPackage,
    out: Path,
    report: PrepareReport,
    accept: Callable[[_Job, np.ndarray], str | None] = lambda job, image: None,
) -> ManifestEntry | None:
    label = f"{package.name}:{job.source_path}"
    destination = out / job.output
    data = read_source(package.root, job.source_path)
    if data is None:
        warnings.warn(
            f"{label} is not in {package.name} {package.version}; skipped (the package changed "
            "since imgcomp's file lists were made)",
            stacklevel=3,
        )
        report.dropped.append((label, "missing from the package"))
        return None
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*alpha channel dropped")
        original = load_image(data)
    source_size = (original.shape[1], original.shape[0])
    if job.rotation:
        if job.rotation % 90:
            raise ImgcompError(f"{label}: rotation must be a multiple of 90 degrees")
        original = np.ascontiguousarray(np.rot90(original, k=-(job.rotation // 90)))
    image = _transform(job.recipe, original, job.source_path)
    reason = (
        f"too small ({original.shape[1]}x{original.shape[0]})"
        if image is None
        else accept(job, image)
    )
    if reason is not None:
        report.dropped.append((label, reason))
        destination.unlink(missing_ok=True)  # left from an older run
        return None
    save_image(image, destination, force=True)
    license_info = _license(job, package)
    return ManifestEntry(
        split=job.group.split,
        path=job.output,
        package=package.name,
        package_version=package.version,
        package_kind=package.kind,
        original_path=job.source_path,
        license=license_info.license,
        license_source=license_info.source,
        original_size=source_size,
        output_size=(image.shape[1], image.shape[0]),
        processing=job.processing,
        original_sha256=hashlib.sha256(data).hexdigest(),
        sha256=file_sha256(destination),
    )


def _license(job: _Job, package: ExtractedPackage) -> LicenseInfo:
    if job.source_path in job.group.licenses:
        return LicenseInfo(*job.group.licenses[job.source_path])
    found = find_license(
        package.root,
        package.name,
        job.source_path,
        upstream_prefix=job.group.upstream_prefix,
        license_file=job.group.license_file,
    )
    if job.group.license is not None and (
        found.license == "unknown" or found.license.startswith("see ")
    ):
        license_name, where = job.group.license
        return LicenseInfo(license_name, where)
    return found


def _package_record(package: ExtractedPackage) -> dict:
    record = {"version": package.version, "kind": package.kind}
    if package.archive is not None:
        record["archive"] = package.archive
        record["archive_sha256"] = package.archive_sha256
    return record


def _warn_if_unreviewed(group: ImageGroup, package: ExtractedPackage) -> None:
    if group.reviewed_version is not None and package.version != group.reviewed_version:
        warnings.warn(
            f"{package.name} {package.version} is not the version whose images were reviewed "
            f"({group.reviewed_version}); the manifest records the version used",
            stacklevel=3,
        )


def _warn_about_unlisted(folder: Path, manifest: Manifest) -> None:
    if not folder.is_dir():
        return
    listed = {entry.path for entry in manifest.entries.values()}
    extra = sorted(
        path.name
        for path in folder.iterdir()
        if path.suffix.lower() in IMAGE_SUFFIXES and f"{folder.name}/{path.name}" not in listed
    )
    if extra:
        warnings.warn(
            f"{folder}: {len(extra)} image(s) not in the manifest (left from an older run or added "
            f"by hand): {', '.join(extra[:5])}{' ...' if len(extra) > 5 else ''}",
            stacklevel=3,
        )


@dataclass(frozen=True)
class ImageStats:
    """Texture indicators of one prepared image."""

    path: str
    texture: float  # texture_score
    jpeg_bpp_q75: float  # jpeg_bpp at quality 75


def texture_statistics(out_dir: str | os.PathLike) -> dict[str, list[ImageStats]]:
    """Texture score and JPEG quality-75 bpp of every file in a prepared folder, by split."""
    out = Path(out_dir)
    manifest = read_manifest(out)
    if manifest is None:
        raise ImgcompError(f"{out}: no manifest.json; run 'imgcomp data prepare --out {out}'")
    stats: dict[str, list[ImageStats]] = {}
    for entry in sorted(manifest.entries.values(), key=lambda entry: (entry.split, entry.path)):
        image = load_image(out / entry.path)
        stats.setdefault(entry.split, []).append(
            ImageStats(entry.path, texture_score(image), jpeg_bpp(image, 75))
        )
    return stats
