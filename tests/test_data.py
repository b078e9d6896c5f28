"""imgcomp.data: image folders, the training/validation pipeline, data-set preparation with its
manifest, package fetching, checksummed downloads and the ``imgcomp data`` commands.

Network-free: packages come from local folders or a .deb built here, downloads from a local
HTTP server or file:// URLs, and apt-get is replaced by a stand-in script.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import shutil
import socket
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import imgcomp.cli as cli
import imgcomp.data.packages as packages_module
import imgcomp.data.prepare as prepare_module
from imgcomp.cli import data as data_cli
from imgcomp.data import (
    CropSampler,
    RandomCropDataset,
    ValidationImages,
    download_kodak,
    download_verified,
    list_images,
    make_train_loader,
    make_val_loader,
    prepare_dataset,
)
from imgcomp.data.folder import data_set_images
from imgcomp.data.licenses import dep5_license, find_license, license_from_notice, parse_dep5
from imgcomp.data.manifest import read_manifest
from imgcomp.data.packages import ExtractedPackage, PackageFetcher
from imgcomp.data.sources import (
    MIXED_PHOTO_WEIGHT,
    PACKAGE_LICENSES,
    POOL_SOURCES,
    TRAIN_SOURCES,
    VAL_SOURCES,
    VAL_TEXTURED_SOURCES,
    ImageGroup,
)
from imgcomp.errors import ImgcompError
from imgcomp.io import load_image

ASSETS = Path(__file__).resolve().parents[1] / "src" / "imgcomp" / "assets"


def write_image(path: Path, width: int, height: int, seed: int = 0, **save_params) -> np.ndarray:
    """A smooth random colour image (JPEG-friendly) saved at ``path``; returns its pixels."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (max(2, height // 16), max(2, width // 16), 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((width, height), Image.Resampling.BILINEAR)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **save_params)
    return np.asarray(image)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ----------------------------------------------------------------------------------- list_images


def test_list_images_sorted_and_not_recursive_by_default(tmp_path: Path) -> None:
    for name in ["b.png", "a.JPG", "c.jpeg", "notes.txt", ".hidden.png", "sub/d.png"]:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    assert [p.name for p in list_images(tmp_path)] == ["a.JPG", "b.png", "c.jpeg"]
    nested = list_images(tmp_path, recursive=True)
    assert [p.relative_to(tmp_path).as_posix() for p in nested] == [
        "a.JPG",
        "b.png",
        "c.jpeg",
        "sub/d.png",
    ]


def test_list_images_errors(tmp_path: Path) -> None:
    with pytest.raises(ImgcompError, match="no such folder"):
        list_images(tmp_path / "missing")
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(ImgcompError, match="not a folder"):
        list_images(tmp_path / "file.png")
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "readme.txt").write_text("no images")
    (empty / "sub" / "x.png").write_bytes(b"x")
    with pytest.raises(ImgcompError, match="no PNG or JPEG"):
        list_images(empty)


def test_image_list_files(tmp_path: Path) -> None:
    write_image(tmp_path / "photos" / "a.png", 40, 30)
    write_image(tmp_path / "photos" / "b.jpg", 40, 30)
    listing = tmp_path / "weighted.txt"
    listing.write_text(f"# comment\nphotos/a.png\n\n  photos/b.jpg  \nphotos/a.png\n{tmp_path / 'photos' / 'b.jpg'}\n")
    assert [p.relative_to(tmp_path).as_posix() for p in data_set_images(listing)] == [
        "photos/a.png", "photos/b.jpg", "photos/a.png", "photos/b.jpg"]
    assert [p.name for p in data_set_images(tmp_path / "photos")] == ["a.png", "b.jpg"]  # a folder as before
    dataset = RandomCropDataset(listing, 16)
    assert len(dataset) == 4 and dataset.image(0) is dataset.image(2)  # decoded once, sampled twice
    for text, message in [
        ("photos/missing.png\n", "line 1: .*missing.png: no such file"),
        ("# nothing\n\n", "names no image"),
        ("photos/a.png\nnotes.md\n", "line 2: notes.md is not a PNG or JPEG image"),
    ]:
        listing.write_text(text)
        with pytest.raises(ImgcompError, match=message):
            data_set_images(listing)
    with pytest.raises(ImgcompError, match="no such image list"):
        data_set_images(tmp_path / "absent.txt")


# ------------------------------------------------------------------------------ training pipeline


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    for index, (width, height) in enumerate([(64, 48), (50, 70), (80, 80), (40, 36), (96, 40)]):
        write_image(folder / f"img{index}.png", width, height, seed=index)
    return folder


def all_batches(loader) -> list[torch.Tensor]:
    return [batch.clone() for batch in loader]


@pytest.mark.parametrize("crop", [32, (24, 40)])
def test_crops_have_the_requested_shape_and_range(image_folder: Path, crop) -> None:
    loader = make_train_loader(image_folder, crop, batch_size=2, seed=0)
    batch = next(iter(loader))
    height, width = (crop, crop) if isinstance(crop, int) else crop
    assert batch.shape == (2, 3, height, width) and batch.dtype == torch.float32
    assert batch.min() >= 0 and batch.max() <= 255 and batch.max() > 1  # 0-255 scale, not 0-1


def test_crop_is_a_window_of_the_image_possibly_flipped() -> None:
    image = np.random.default_rng(1).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    dataset = RandomCropDataset([Path("unused")], 8, cache=False)
    flips = set()
    for seed in range(40):
        patch = dataset.random_crop(image, np.random.default_rng(seed))
        windows = [image[top : top + 8, left : left + 8] for top in range(13) for left in range(23)]
        plain = any(np.array_equal(patch, w) for w in windows)
        mirrored = any(np.array_equal(patch[:, ::-1], w) for w in windows)
        assert plain or mirrored
        flips.add(mirrored and not plain)
    assert flips == {True, False}  # both orientations occur


def test_vertical_flip_option() -> None:
    image = np.arange(16 * 16 * 3, dtype=np.uint8).reshape(16, 16, 3)
    dataset = RandomCropDataset([Path("unused")], 16, vertical_flip=True, cache=False)
    rows_reversed = 0
    for seed in range(30):
        patch = dataset.random_crop(image, np.random.default_rng(seed))
        rows_reversed += int(patch[0, 0, 0] > patch[-1, 0, 0])
    assert 0 < rows_reversed < 30


def test_same_seed_same_batches_with_and_without_workers(image_folder: Path) -> None:
    first = all_batches(
        make_train_loader(image_folder, 32, batch_size=2, seed=7, samples_per_epoch=8)
    )
    again = all_batches(
        make_train_loader(image_folder, 32, batch_size=2, seed=7, samples_per_epoch=8)
    )
    workers = all_batches(
        make_train_loader(image_folder, 32, batch_size=2, workers=2, seed=7, samples_per_epoch=8)
    )
    other = all_batches(
        make_train_loader(image_folder, 32, batch_size=2, seed=8, samples_per_epoch=8)
    )
    assert len(first) == 4
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(first, workers, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))


def test_each_pass_is_a_new_epoch_and_set_epoch_replays(image_folder: Path) -> None:
    loader = make_train_loader(image_folder, 32, batch_size=5, seed=3)
    epoch0, epoch1 = all_batches(loader), all_batches(loader)
    assert len(epoch0) == 1  # 5 images, one batch of 5
    assert not torch.equal(epoch0[0], epoch1[0])
    loader.sampler.set_epoch(0)
    assert torch.equal(all_batches(loader)[0], epoch0[0])


def test_sampler_covers_images_evenly_and_shards_across_ranks() -> None:
    single = list(CropSampler(5, 20, seed=1))
    assert sorted(np.bincount([index for index, _ in single]).tolist()) == [4] * 5
    ranks = [list(CropSampler(5, 20, seed=1, rank=rank, world_size=2)) for rank in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 10
    interleaved = [pair for pairs in zip(*ranks, strict=True) for pair in pairs]
    assert interleaved == single
    uneven = [list(CropSampler(5, 7, seed=1, rank=rank, world_size=2)) for rank in range(2)]
    assert len(uneven[0]) == len(uneven[1]) == 4  # rounded up so DDP ranks stay in step


def test_distributed_loaders_split_one_draw(image_folder: Path) -> None:
    whole = all_batches(
        make_train_loader(image_folder, 32, batch_size=2, seed=5, samples_per_epoch=8)
    )
    shards = [
        all_batches(
            make_train_loader(
                image_folder, 32, batch_size=1, seed=5, samples_per_epoch=8, rank=r, world_size=2
            )
        )
        for r in range(2)
    ]
    global_order = torch.cat(whole)
    rank_order = torch.cat([torch.cat([a, b]) for a, b in zip(*shards, strict=True)])
    assert torch.equal(global_order, rank_order)


def test_small_images_are_padded_or_skipped(tmp_path: Path) -> None:
    write_image(tmp_path / "big.png", 64, 64, seed=1)
    small = write_image(tmp_path / "small.png", 20, 12, seed=2)
    padded = RandomCropDataset([tmp_path / "small.png"], 32)
    crop = padded[(0, 123)]
    assert crop.shape == (3, 32, 32) and padded[0].shape == (3, 32, 32)  # (index, seed) or index
    values = {tuple(v) for v in small.reshape(-1, 3).tolist()}
    assert {tuple(v) for v in crop.permute(1, 2, 0).reshape(-1, 3).int().tolist()} <= values
    skipping = RandomCropDataset(tmp_path, 32, small_images="skip")
    assert [p.name for p in skipping.paths] == ["big.png"]
    with pytest.raises(ImgcompError, match="at least 32x32"):
        RandomCropDataset([tmp_path / "small.png"], 32, small_images="skip")
    one_pixel = RandomCropDataset([Path("unused")], 4, cache=False)
    assert one_pixel.random_crop(small[:1, :1], np.random.default_rng(0)).shape == (4, 4, 3)


def test_train_loader_errors(image_folder: Path, tmp_path: Path) -> None:
    with pytest.raises(ImgcompError, match="no full batch"):
        make_train_loader(image_folder, 32, batch_size=4, samples_per_epoch=3)
    with pytest.raises(ImgcompError, match="no such folder"):
        make_train_loader(tmp_path / "missing", 32)
    with pytest.raises(ImgcompError, match="rank"):
        CropSampler(3, rank=2, world_size=2)


def test_validation_images_are_whole_or_centre_cropped(image_folder: Path) -> None:
    names, shapes = [], []
    for image, name in make_val_loader(image_folder):
        names.append(name[0])
        shapes.append(tuple(image.shape))
    assert names == [f"img{i}.png" for i in range(5)]
    assert shapes[0] == (1, 3, 48, 64)
    cropped = ValidationImages(image_folder, center_crop=40)
    image, name = cropped[0]
    full = load_image(image_folder / name)
    assert image.shape == (3, 40, 40)
    assert torch.equal(image, torch.from_numpy(full[4:44, 12:52]).permute(2, 0, 1).float())
    assert tuple(cropped[3][0].shape) == (3, 36, 40)  # a 40x36 image keeps its short side
    shards = [ValidationImages(image_folder, rank=r, world_size=2) for r in range(2)]
    assert [p.name for p in shards[0].paths] + [p.name for p in shards[1].paths] == [
        "img0.png", "img2.png", "img4.png", "img1.png", "img3.png",
    ]  # fmt: skip


# ------------------------------------------------------------------------------------- licences

DEP5 = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: fake

Files: *
Copyright: 2020 Someone
License: GPL-2+

Files: photos/special/*
       photos/other.jpg
Copyright: 2021 Photographer
License: CC-BY-4.0
 Long licence text that is not the short name.

Files: debian/*
Copyright: 2022 Packager
License: GPL-2+
"""


def test_dep5_last_matching_paragraph_wins() -> None:
    paragraphs = parse_dep5(DEP5)
    assert dep5_license(paragraphs, "photos/special/a.jpg") == "CC-BY-4.0"
    assert dep5_license(paragraphs, "photos/other.jpg") == "CC-BY-4.0"
    assert dep5_license(paragraphs, "photos/plain.jpg") == "GPL-2+"
    assert parse_dep5("This package was debianized by ...") is None


def test_licence_notices() -> None:
    assert (
        license_from_notice("Licensed under https://creativecommons.org/licenses/by-sa/3.0/")
        == "CC-BY-SA-3.0"
    )
    assert license_from_notice("https://creativecommons.org/publicdomain/zero/1.0/") == "CC0-1.0"
    assert license_from_notice("\nMIT License\nPermission is ...") == "MIT License"


# ------------------------------------------------------------------------- prepare (fake packages)


def make_fake_packages(root: Path) -> tuple[dict[str, Path], list[ImageGroup]]:
    """Two fake extracted packages and the image groups that use them."""
    train_root, val_root = root / "fake-photos", root / "fake-val"
    write_image(train_root / "usr/share/pics/special/large.jpg", 640, 520, seed=1, quality=90)
    write_image(train_root / "usr/share/pics/medium.png", 400, 300, seed=2)
    write_image(train_root / "usr/share/pics/tiny.jpg", 300, 200, seed=3)
    (train_root / "usr/share/doc/fake-photos").mkdir(parents=True)
    (train_root / "usr/share/doc/fake-photos/copyright").write_text(
        DEP5.replace("photos/special/*", "pics/special/*")
    )
    write_image(val_root / "usr/share/val/wide.png", 1200, 800, seed=4)
    write_image(val_root / "usr/share/val/four-three.jpg", 1024, 768, seed=5)
    write_image(val_root / "usr/share/val/portrait.png", 600, 900, seed=6)
    (val_root / "usr/share/val/License").write_text(
        "Licensed under https://creativecommons.org/licenses/by/4.0/\n"
    )
    groups = [
        ImageGroup(
            package="fake-photos",
            split="train",
            files={
                "usr/share/pics/special/large.jpg": "large.png",
                "usr/share/pics/medium.png": "medium.png",
                "usr/share/pics/tiny.jpg": "tiny.png",
                "usr/share/pics/absent.jpg": "absent.png",
            },
            upstream_prefix=("usr/share/", ""),
        ),
        ImageGroup(
            package="fake-val",
            split="val",
            files={
                "usr/share/val/wide.png": "wide.png",
                "usr/share/val/four-three.jpg": "four-three.png",
                "usr/share/val/portrait.png": "portrait.png",
            },
            license_file="usr/share/val/License",
        ),
    ]
    return {"fake-photos": train_root, "fake-val": val_root}, groups


class FakeFetcher:
    """Serves the fake packages and counts how often each is asked for."""

    def __init__(self, roots: dict[str, Path]) -> None:
        self.roots, self.calls = roots, []

    def __call__(self, name: str) -> ExtractedPackage:
        self.calls.append(name)
        if name not in self.roots:
            raise ImgcompError(f"cannot fetch Debian package {name!r}")
        return ExtractedPackage(name, "1.0-1", self.roots[name])


@pytest.fixture()
def fake_sources(tmp_path: Path) -> tuple[FakeFetcher, list[ImageGroup]]:
    roots, groups = make_fake_packages(tmp_path / "packages")
    return FakeFetcher(roots), groups


def run_prepare(out: Path, fetcher: FakeFetcher, groups: list[ImageGroup], **options):
    with pytest.warns(UserWarning, match="absent.jpg"):
        return prepare_dataset(out, fetcher=fetcher, sources=groups, **options)


def test_prepare_writes_images_and_a_complete_manifest(tmp_path: Path, fake_sources) -> None:
    fetcher, groups = fake_sources
    out = tmp_path / "data"
    report = run_prepare(out, fetcher, groups)
    assert report.counts == {"train": 2, "val": 3}
    assert sorted(p.name for p in list_images(out / "train")) == ["large.png", "medium.png"]
    assert {source for source, _ in report.dropped} == {
        "fake-photos:usr/share/pics/tiny.jpg",  # 200 px short side < 256
        "fake-photos:usr/share/pics/absent.jpg",
    }
    sizes = {
        p.name: Image.open(p).size
        for p in sorted((out / "train").iterdir()) + sorted((out / "val").iterdir())
    }
    assert sizes == {
        "large.png": (320, 260),  # halved
        "medium.png": (341, 256),  # 300 -> 256: downscaled by less than 2
        "wide.png": (768, 512),
        "four-three.png": (683, 512),
        "portrait.png": (512, 768),
    }
    document = json.loads((out / "manifest.json").read_text())
    assert document["packages"]["fake-photos"]["version"] == "1.0-1"
    entries = {entry["path"]: entry for entry in document["files"]}
    assert set(entries) == {
        "train/large.png",
        "train/medium.png",
        "val/wide.png",
        "val/four-three.png",
        "val/portrait.png",
    }
    for path, entry in entries.items():
        assert entry["sha256"] == sha256((out / path).read_bytes())
        assert (
            entry["package"] in ("fake-photos", "fake-val") and entry["package_version"] == "1.0-1"
        )
        assert entry["split"] == path.split("/")[0]
        assert list(entry["output_size"]) == list(Image.open(out / path).size)
        assert entry["original_path"].startswith("usr/share/")
        assert len(entry["original_sha256"]) == 64
    assert entries["train/large.png"]["license"] == "CC-BY-4.0"  # the specific DEP-5 paragraph
    assert entries["train/medium.png"]["license"] == "GPL-2+"  # the catch-all paragraph
    assert entries["val/wide.png"]["license"] == "CC-BY-4.0"
    assert entries["val/wide.png"]["license_source"] == "usr/share/val/License"
    assert entries["train/large.png"]["original_size"] == [640, 520]


def test_prepare_is_idempotent(tmp_path: Path, fake_sources) -> None:
    fetcher, groups = fake_sources
    out = tmp_path / "data"
    run_prepare(out, fetcher, groups)
    manifest_bytes = (out / "manifest.json").read_bytes()
    fetched_before = len(fetcher.calls)

    # fake-val is complete: not fetched again; fake-photos still lacks absent.jpg, so it is.
    rerun = run_prepare(out, fetcher, groups)
    assert rerun.written == [] and len(rerun.skipped) == 5
    assert fetcher.calls[fetched_before:] == ["fake-photos"]
    assert (out / "manifest.json").read_bytes() == manifest_bytes

    (out / "val" / "wide.png").write_bytes(b"damaged")
    (out / "train" / "medium.png").unlink()
    repaired = run_prepare(out, fetcher, groups)
    assert sorted(repaired.written) == ["train/medium.png", "val/wide.png"]
    assert (out / "manifest.json").read_bytes() == manifest_bytes

    forced = run_prepare(out, fetcher, groups, force=True)
    assert len(forced.written) == 5
    assert (out / "manifest.json").read_bytes() == manifest_bytes  # same bytes when rebuilt
    assert set(read_manifest(out).entries) == {
        "train/large.png",
        "train/medium.png",
        "val/wide.png",
        "val/four-three.png",
        "val/portrait.png",
    }


def test_prepare_keeps_finished_work_when_a_package_fails(tmp_path: Path, fake_sources) -> None:
    fetcher, groups = fake_sources
    out = tmp_path / "data"
    run_prepare(out, fetcher, groups)
    (out / "val" / "wide.png").write_bytes(b"damaged")
    broken = FakeFetcher({"fake-photos": fetcher.roots["fake-photos"]})  # fake-val unavailable
    with (
        pytest.warns(UserWarning, match="absent.jpg"),
        pytest.raises(ImgcompError, match="fake-val"),
    ):
        prepare_dataset(out, fetcher=broken, sources=groups)
    assert len(read_manifest(out).entries) == 5  # nothing forgotten
    repaired = run_prepare(out, fetcher, groups)
    assert repaired.written == ["val/wide.png"]


def test_prepare_reports_a_package_that_cannot_be_fetched(tmp_path: Path) -> None:
    group = ImageGroup(package="no-such-package", split="train", files={"a.jpg": "a.png"})
    with pytest.raises(ImgcompError, match="no-such-package"):
        prepare_dataset(tmp_path / "data", fetcher=FakeFetcher({}), sources=[group])


def test_shipped_allowlists_are_consistent() -> None:
    train = [name for group in TRAIN_SOURCES for name in group.files.values()]
    val = [name for group in VAL_SOURCES for name in group.files.values()]
    assert len(train) == len(set(train)) >= 50
    assert (
        len(val) == 11 and sum(path.endswith(".png") for g in VAL_SOURCES for path in g.files) == 7
    )
    assert all(name.endswith(".png") and name == name.lower() for name in train + val)


def test_demo_asset_is_a_validation_photo() -> None:
    demo = ASSETS / "demo.png"
    assert demo.stat().st_size < 800_000
    assert load_image(demo).shape == (512, 768, 3)
    assert "CC BY-SA 3.0" in (ASSETS / "README.md").read_text()


# ------------------------------------------------------------ photo pool and textured validation


def write_textured(path: Path, width: int, height: int, seed: int = 0, **save_params) -> None:
    """A detailed image (fine noise over coarse colour): scores high on texture."""
    rng = np.random.default_rng(seed)
    base = write_image(path, width, height, seed=seed).astype(np.int16)
    noise = rng.integers(-60, 61, (height, width, 1), dtype=np.int16)
    Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)).save(path, **save_params)


def write_smooth(path: Path, width: int, height: int) -> None:
    """A gentle horizontal gradient: scores near zero on texture."""
    ramp = np.linspace(40, 200, width, dtype=np.float32)[None, :, None]
    image = np.broadcast_to(ramp, (height, width, 3)).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


def make_pool_packages(root: Path) -> tuple[dict[str, Path], list[ImageGroup]]:
    """A fake photo package, a fake game package with a .pk3 archive, and a fake val package."""
    photos, game, val = root / "fake-pool", root / "fake-game", root / "fake-textured"
    base = photos / "usr/share/photos"
    write_image(base / "big.jpg", 3000, 2000, seed=11, quality=92)
    write_image(base / "wide.jpg", 1600, 1000, seed=12, quality=92)
    write_image(base / "small.jpg", 400, 300, seed=13, quality=92)
    write_image(base / "lossless.png", 900, 600, seed=14)
    write_image(base / "large.png", 1600, 1200, seed=15)
    # The same picture as wide.jpg, smaller and lossless: a near-duplicate.
    Image.open(base / "wide.jpg").resize((1200, 750), Image.Resampling.LANCZOS).save(
        base / "wide-copy.png"
    )
    (photos / "usr/share/doc/fake-pool").mkdir(parents=True)
    (photos / "usr/share/doc/fake-pool/copyright").write_text("Not DEP-5: free for any use.\n")

    archive = game / "usr/share/games/fake/textures.pk3"
    archive.parent.mkdir(parents=True)
    write_textured(root / "rock.jpg", 1024, 1024, seed=16, quality=90)
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.write(root / "rock.jpg", "textures/nature/rock.jpg")
    (game / "usr/share/doc/fake-game").mkdir(parents=True)
    (game / "usr/share/doc/fake-game/copyright").write_text(
        DEP5.replace("photos/special/*", "base/textures/nature/*")
    )

    write_textured(val / "usr/share/demo/street.jpg", 1200, 800, seed=17, quality=95)
    write_textured(val / "usr/share/demo/portrait.jpg", 800, 1000, seed=18, quality=95)
    write_smooth(val / "usr/share/demo/sky.png", 1200, 800)
    # A copy of a training photo must not be a validation photo.
    shutil.copy(base / "big.jpg", val / "usr/share/demo/big-again.jpg")

    groups = [
        ImageGroup(
            package="fake-pool",
            split="train",
            recipe="pool-v1",
            files={
                f"usr/share/photos/{name}": f"pool-{name.split('.')[0]}.png"
                for name in (
                    "big.jpg", "wide.jpg", "small.jpg", "lossless.png", "large.png",
                    "wide-copy.png",
                )
            },  # fmt: skip
            license=("public-domain", "usr/share/doc/fake-pool/copyright"),
        ),
        ImageGroup(
            package="fake-game",
            split="train",
            recipe="pool-v1",
            files={"usr/share/games/fake/textures.pk3!textures/nature/rock.jpg": "game-rock.png"},
            upstream_prefix=("usr/share/games/fake/textures.pk3!", "base/"),
        ),
        ImageGroup(
            package="fake-textured",
            split="val-textured",
            files={
                "usr/share/demo/street.jpg": "street.png",
                "usr/share/demo/portrait.jpg": "portrait.png",
                "usr/share/demo/sky.png": "sky.png",
                "usr/share/demo/big-again.jpg": "big-again.png",
            },
            min_texture=2.0,
            license=("GPL-2+", "usr/share/doc/fake-textured/copyright (package-wide)"),
            rotations={"usr/share/demo/street.jpg": 90},
        ),
    ]
    return {"fake-pool": photos, "fake-game": game, "fake-textured": val}, groups


def test_pool_downscale_recipe() -> None:
    def size(width: int, height: int, lossy: bool) -> tuple[int, int] | None:
        image = np.zeros((height, width, 3), np.uint8)
        result = prepare_module.downscale_for_pool(image, lossy=lossy)
        return None if result is None else (result.shape[1], result.shape[0])

    assert size(1600, 1000, lossy=True) == (800, 500)  # JPEG: at least halved
    assert size(3000, 2000, lossy=True) == (1152, 768)  # ... and short side at most 768
    assert size(400, 300, lossy=True) == (341, 256)  # ... but never under 256
    assert size(900, 600, lossy=False) == (900, 600)  # lossless: kept as it is
    assert size(1600, 1200, lossy=False) == (1024, 768)
    assert size(300, 250, lossy=False) is None


def test_signatures_texture_and_jpeg_bpp(tmp_path: Path) -> None:
    picture = write_image(tmp_path / "a.png", 640, 480, seed=1)
    other = write_image(tmp_path / "b.png", 640, 480, seed=2)
    smaller = np.asarray(Image.fromarray(picture).resize((320, 240), Image.Resampling.LANCZOS))
    signature = prepare_module.image_signature
    distance = prepare_module.signature_distance
    assert distance(signature(picture), signature(smaller)) <= prepare_module.DUPLICATE_DISTANCE
    assert distance(signature(picture), signature(other)) > prepare_module.DUPLICATE_DISTANCE
    write_textured(tmp_path / "t.png", 640, 480, seed=3)
    write_smooth(tmp_path / "s.png", 640, 480)
    textured, smooth = load_image(tmp_path / "t.png"), load_image(tmp_path / "s.png")
    assert prepare_module.texture_score(smooth) < 1 < 10 < prepare_module.texture_score(textured)
    assert prepare_module.jpeg_bpp(smooth) < 0.5 < 2 < prepare_module.jpeg_bpp(textured)


def test_prepare_pool_and_textured_validation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    roots, groups = make_pool_packages(tmp_path / "packages")
    fetcher = FakeFetcher(roots)
    out = tmp_path / "data"
    monkeypatch.setattr(prepare_module, "TEXTURE_PACKAGES", frozenset({"fake-game"}))
    report = prepare_dataset(out, fetcher=fetcher, sources=groups)
    assert report.counts == {"train": 6, "val-textured": 2}
    dropped = dict(report.dropped)
    assert dropped["fake-pool:usr/share/photos/wide-copy.png"] == (
        "near-duplicate of train/pool-wide.png"
    )
    assert dropped["fake-textured:usr/share/demo/big-again.jpg"] == (
        "near-duplicate of train/pool-big.png"
    )
    assert dropped["fake-textured:usr/share/demo/sky.png"].startswith("too smooth")
    sizes = {path.name: Image.open(path).size for path in sorted((out / "train").iterdir())}
    assert sizes == {
        "game-rock.png": (512, 512),
        "pool-big.png": (1152, 768),
        "pool-large.png": (1024, 768),
        "pool-lossless.png": (900, 600),
        "pool-small.png": (341, 256),
        "pool-wide.png": (800, 500),
    }
    textured = sorted(p.name for p in (out / "val-textured").iterdir())
    assert textured == ["portrait.png", "street.png"]
    assert Image.open(out / "val-textured/street.png").size == (512, 768)  # turned upright

    document = json.loads((out / "manifest.json").read_text())
    entries = {entry["path"]: entry for entry in document["files"]}
    rock = entries["train/game-rock.png"]
    assert rock["original_path"] == "usr/share/games/fake/textures.pk3!textures/nature/rock.jpg"
    assert rock["original_sha256"] == sha256((tmp_path / "packages/rock.jpg").read_bytes())
    assert rock["license"] == "CC-BY-4.0"  # DEP-5 paragraph of the archive's upstream folder
    assert rock["processing"] == "pool-v1" and rock["split"] == "train"
    assert entries["train/pool-big.png"]["license"] == "public-domain"  # not DEP-5: group licence
    street = entries["val-textured/street.png"]
    assert street["split"] == "val-textured" and street["processing"] == "rotate90+val-v1"
    assert street["original_size"] == [1200, 800]
    assert entries["val-textured/portrait.png"]["processing"] == "val-v1"
    assert street["license"] == "GPL-2+"  # no copyright file: the group's package-wide licence
    for path, entry in entries.items():
        assert entry["sha256"] == sha256((out / path).read_bytes())
    assert "pool-v1" in document["processing"]

    # The weighted list: the game texture once, each photograph MIXED_PHOTO_WEIGHT times.
    listed = data_set_images(out / "train-mixed.txt")
    names = [path.name for path in listed]
    assert names.count("game-rock.png") == 1
    assert {name: names.count(name) for name in names if name != "game-rock.png"} == {
        name: MIXED_PHOTO_WEIGHT for name in sizes if name != "game-rock.png"}
    assert all(path.parent == out / "train" for path in listed)

    # Rerun: nothing rebuilt; the manifest is byte-identical.
    manifest_bytes = (out / "manifest.json").read_bytes()
    rerun = prepare_dataset(out, fetcher=fetcher, sources=groups)
    assert rerun.written == [] and len(rerun.skipped) == 8
    assert (out / "manifest.json").read_bytes() == manifest_bytes

    stats = prepare_module.texture_statistics(out)
    assert [row.path for row in stats["val-textured"]] == [
        "val-textured/portrait.png", "val-textured/street.png",
    ]  # fmt: skip
    assert all(row.texture > 2 and row.jpeg_bpp_q75 > 0 for row in stats["val-textured"])


def test_shipped_pool_and_textured_validation_lists() -> None:
    pool = [g for g in TRAIN_SOURCES + POOL_SOURCES]
    textured = list(VAL_TEXTURED_SOURCES)
    names = [name for group in pool for name in group.files.values()]
    val_names = [name for group in textured for name in group.files.values()]
    assert len(names) == len(set(names)) >= 300
    assert len(val_names) == len(set(val_names)) >= 20
    all_groups = pool + textured + list(VAL_SOURCES)
    assert not any(group.package.startswith("lomiri-wallpapers") for group in all_groups)
    # Validation photos come from packages that give no training photo.
    assert not {g.package for g in pool} & {g.package for g in textured + list(VAL_SOURCES)}
    assert all(group.recipe == "pool-v1" for group in POOL_SOURCES)
    assert all(g.split == "val-textured" and g.min_texture > 0 for g in textured)
    assert {group.package for group in all_groups} == set(PACKAGE_LICENSES)


# --------------------------------------------------------------------------- packages (.deb, apt)

needs_dpkg = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")


@pytest.fixture()
def fake_deb(tmp_path: Path) -> Path:
    """A tiny real .deb (built locally with dpkg-deb) holding one photo and a copyright file."""
    tree = tmp_path / "deb-tree"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN/control").write_text(
        "Package: imgcomp-test-photos\nVersion: 2:1.5-3\nArchitecture: all\n"
        "Maintainer: imgcomp tests <tests@example.org>\nDescription: test photos\n"
    )
    write_image(tree / "usr/share/photos/p.jpg", 600, 600, seed=9)
    (tree / "usr/share/doc/imgcomp-test-photos").mkdir(parents=True)
    (tree / "usr/share/doc/imgcomp-test-photos/copyright").write_text(DEP5)
    deb = tmp_path / "imgcomp-test-photos_1.5-3_all.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "--build", str(tree), str(deb)],
        check=True,
        capture_output=True,
    )
    return deb


def fake_apt(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *, deb: Path | None) -> Path:
    """Replace ``apt-get download`` by a script that copies ``deb`` here, or fails like apt."""
    log = tmp_path / "apt-calls.txt"
    if deb is None:
        body = "sys.stderr.write(f'E: Unable to locate package {sys.argv[-1]}\\n'); sys.exit(100)"
    else:
        body = f"import shutil; shutil.copy({str(deb)!r}, '.')"
    script = tmp_path / "fake-apt.py"
    script.write_text(f"import sys\nopen({str(log)!r}, 'a').write(sys.argv[-1] + '\\n')\n{body}\n")
    monkeypatch.setattr(packages_module, "APT_DOWNLOAD_COMMAND", (sys.executable, str(script)))
    return log


@needs_dpkg
def test_fetcher_downloads_once_and_reuses_the_cache(
    tmp_path: Path, fake_deb: Path, monkeypatch
) -> None:
    log = fake_apt(monkeypatch, tmp_path, deb=fake_deb)
    cache = tmp_path / "cache"
    package = PackageFetcher(cache)("imgcomp-test-photos")
    assert package.version == "2:1.5-3" and package.kind == "debian"
    assert package.archive == fake_deb.name and package.archive_sha256 == sha256(
        fake_deb.read_bytes()
    )
    assert (package.root / "usr/share/photos/p.jpg").is_file()
    assert find_license(package.root, package.name, "usr/share/photos/p.jpg").license == "GPL-2+"
    again = PackageFetcher(cache)("imgcomp-test-photos")
    assert again == package
    assert log.read_text().split() == ["imgcomp-test-photos"]  # apt ran once
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no scratch left


def test_fetcher_failure_names_the_package_and_the_fix(tmp_path: Path, monkeypatch) -> None:
    fake_apt(monkeypatch, tmp_path, deb=None)
    cache = tmp_path / "cache"
    with pytest.raises(ImgcompError) as error:
        PackageFetcher(cache)("imgcomp-bogus-package")
    message = str(error.value)
    assert "imgcomp-bogus-package" in message and "Unable to locate package" in message
    assert "apt-get update" in message and str(cache) in message and "\n" not in message
    assert list(cache.iterdir()) == []


def test_python_package_source() -> None:
    package = PackageFetcher()("scikit-image")
    assert package.kind == "python"
    for group in TRAIN_SOURCES:
        if group.package == "scikit-image":
            assert all((package.root / path).is_file() for path in group.files)


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("IMGCOMP_CACHE", str(tmp_path / "c"))
    assert packages_module.default_cache_dir() == tmp_path / "c" / "debs"
    monkeypatch.delenv("IMGCOMP_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert packages_module.default_cache_dir() == tmp_path / "x" / "imgcomp" / "debs"


# --------------------------------------------------------------------------------------- downloads


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args) -> None:
        pass


@pytest.fixture()
def mirror(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A folder served over HTTP on localhost: (folder, base URL)."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(folder))
    )
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_download_verified_good_path_and_skip(tmp_path: Path, mirror) -> None:
    folder, url = mirror
    payload = b"pretend image bytes" * 100
    (folder / "a.png").write_bytes(payload)
    dest = tmp_path / "out" / "a.png"
    assert download_verified(f"{url}/a.png", dest, sha256(payload), size=len(payload)) == dest
    assert dest.read_bytes() == payload
    # Already verified: nothing is fetched (this URL would fail).
    dead = f"http://127.0.0.1:{unused_port()}/a.png"
    assert download_verified(dead, dest, sha256(payload)) == dest


def test_download_checksum_mismatch_leaves_nothing(tmp_path: Path, mirror) -> None:
    folder, url = mirror
    (folder / "a.png").write_bytes(b"the server's bytes")
    dest = tmp_path / "out" / "a.png"
    with pytest.raises(ImgcompError, match="checksum mismatch"):
        download_verified(f"{url}/a.png", dest, sha256(b"the expected bytes"))
    assert list((tmp_path / "out").iterdir()) == []
    with pytest.raises(ImgcompError, match="expected 5 bytes"):
        download_verified(f"{url}/a.png", dest, sha256(b"the server's bytes"), size=5)
    assert list((tmp_path / "out").iterdir()) == []


def test_download_replaces_a_corrupt_local_file(tmp_path: Path, mirror) -> None:
    folder, url = mirror
    (folder / "a.png").write_bytes(b"good")
    dest = tmp_path / "a.png"
    dest.write_bytes(b"corrupt")
    download_verified(f"{url}/a.png", dest, sha256(b"good"))
    assert dest.read_bytes() == b"good"


def test_download_errors_are_clear(tmp_path: Path, mirror) -> None:
    _, url = mirror
    dest = tmp_path / "a.png"
    with pytest.raises(ImgcompError, match="cannot download .*refused"):
        download_verified(f"http://127.0.0.1:{unused_port()}/a.png", dest, "0" * 64, timeout=5)
    with pytest.raises(ImgcompError, match="HTTP 404"):
        download_verified(f"{url}/missing.png", dest, "0" * 64)
    assert list(tmp_path.iterdir()) == [tmp_path / "mirror"]


def test_download_kodak_from_a_mirror(tmp_path: Path, mirror) -> None:
    folder, url = mirror
    files = {}
    for index in (1, 2, 3):
        payload = f"kodak {index}".encode()
        (folder / f"kodim{index:02d}.png").write_bytes(payload)
        files[f"kodim{index:02d}.png"] = (sha256(payload), len(payload))
    seen = []
    paths = download_kodak(
        tmp_path / "kodak",
        base_url=url + "/",
        files=files,
        on_file=lambda n, d: seen.append((n, d)),
    )
    assert [p.name for p in paths] == ["kodim01.png", "kodim02.png", "kodim03.png"]
    assert all(downloaded for _, downloaded in seen)
    # A file:// mirror works too, and verified files are not fetched again.
    seen.clear()
    (tmp_path / "kodak" / "kodim02.png").unlink()
    download_kodak(
        tmp_path / "kodak",
        base_url=folder.as_uri(),
        files=files,
        on_file=lambda n, d: seen.append((n, d)),
    )
    assert seen == [("kodim01.png", False), ("kodim02.png", True), ("kodim03.png", False)]


# -------------------------------------------------------------------------------------------- CLI


def run_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *args: str
) -> tuple[int, str, str]:
    """Run ``imgcomp.cli.main`` in-process with only the data commands registered."""
    import typer

    app = typer.Typer(pretty_exceptions_enable=False, add_completion=False)
    monkeypatch.setattr(cli, "app", app)
    monkeypatch.setattr(cli, "_register_commands", lambda argv=None: data_cli.register(app))
    monkeypatch.setattr(sys, "argv", ["imgcomp", *args])
    try:
        cli.main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_prepare_with_an_unfetchable_package(tmp_path: Path, monkeypatch, capsys) -> None:
    fake_apt(monkeypatch, tmp_path, deb=None)
    bogus = ImageGroup(package="imgcomp-bogus-package", split="train", files={"x.jpg": "x.png"})
    monkeypatch.setattr(prepare_module, "TRAIN_SOURCES", (bogus,))
    monkeypatch.setattr(prepare_module, "VAL_SOURCES", ())
    code, _, err = run_cli(
        monkeypatch,
        capsys,
        "data",
        "prepare",
        "--out",
        str(tmp_path / "d"),
        "--cache",
        str(tmp_path / "c"),
    )
    assert code == 2 and err.count("error:") == 1 and "Traceback" not in err
    message = " ".join(err.split())  # rich wraps long lines at the terminal width
    assert message.startswith("error: cannot fetch Debian package 'imgcomp-bogus-package'")
    assert "apt-get update" in message


def test_cli_kodak(tmp_path: Path, mirror, monkeypatch, capsys) -> None:
    folder, url = mirror
    (folder / "kodim01.png").write_bytes(b"one")
    monkeypatch.setattr("imgcomp.data.kodak.KODAK_FILES", {"kodim01.png": (sha256(b"one"), 3)})
    code, out, _ = run_cli(
        monkeypatch, capsys, "data", "kodak", "--out", str(tmp_path / "k"), "--base-url", url
    )
    assert code == 0 and "1 Kodak images verified (1 downloaded)" in out
    dead = f"http://127.0.0.1:{unused_port()}"
    (tmp_path / "k" / "kodim01.png").unlink()
    code, _, err = run_cli(
        monkeypatch, capsys, "data", "kodak", "--out", str(tmp_path / "k"), "--base-url", dead
    )
    assert code == 2 and "error: cannot download" in err and "Traceback" not in err


def test_cli_prepare_with_stats(tmp_path: Path, monkeypatch, capsys) -> None:
    roots, groups = make_pool_packages(tmp_path / "packages")
    monkeypatch.setattr(prepare_module, "PackageFetcher", lambda cache: FakeFetcher(roots))
    monkeypatch.setattr(prepare_module, "TRAIN_SOURCES", tuple(groups))
    for name in ("POOL_SOURCES", "VAL_SOURCES", "VAL_TEXTURED_SOURCES"):
        monkeypatch.setattr(prepare_module, name, ())
    out = tmp_path / "d"
    code, stdout, _ = run_cli(monkeypatch, capsys, "data", "prepare", "--out", str(out), "--stats")
    assert code == 0
    assert "6 train, 2 val-textured photos (8 written, 0 up to date)" in stdout
    assert "near-duplicate of train/pool-wide.png" in stdout
    assert "  val-textured: 2 images, texture mean" in stdout and "JPEG q75 mean" in stdout
