"""``imgcomp study create``: reconstructions at matched rates and the study definition.

Patel et al. (2019, sec. 4.3) compare codecs in a two-alternative forced-choice (2AFC) study where
the two reconstructions shown beside the original have the same bitrate. Here, for every image,
codec and target rate the codec's setting whose file is closest in bpp to the target is chosen
(the codec's default sweep, then a bisection between the two settings that bracket the target);
its actual bpp is recorded, and a pair of codecs is compared at that rate only when both are within
the stated relative tolerance of the target. Every image shown to a rater (originals,
reconstructions, attention-check images) is a PNG named by a random opaque id, so nothing of a
file name, codec or rate reaches the browser.

The definition (``study.json``) is JSON with a ``version`` field; see :data:`DEFINITION_VERSION`.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import math
import secrets
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from imgcomp.errors import ImgcompError
from imgcomp.io import file_sha256, load_image
from imgcomp.study.definition import DEFAULT_DB_NAME, DEFINITION_NAME, DEFINITION_VERSION, IMAGES_DIR

DEFAULT_RATES = (0.23, 0.37, 0.67, 1.0)
DEFAULT_TOLERANCE = 0.15
ID_HEX = 16  # hex digits of an image id (64 random bits)
_BISECTION_STEPS = 6


@dataclass(frozen=True)
class Encoded:
    """One codec setting on one image: its bytes' rate and the decoded pixels."""

    setting: float | int
    bytes: int
    bpp: float
    decoded: np.ndarray


def new_image_id() -> str:
    """A random opaque id for an image served to raters (``ID_HEX`` hex digits)."""
    return secrets.token_hex(ID_HEX // 2)


def _encode(codec, image: np.ndarray, setting) -> Encoded:
    data = codec.encode(image, setting)
    decoded = codec.decode(data)
    if decoded.shape != image.shape:
        raise ImgcompError(f"{codec.name}: decoded {decoded.shape}, expected {image.shape}")
    height, width = image.shape[:2]
    return Encoded(setting, len(data), 8.0 * len(data) / (height * width), decoded)


def _midpoint(a, b):
    """A setting between ``a`` and ``b`` (an integer if both are), or None if there is none."""
    if isinstance(a, int) and isinstance(b, int):
        low, high = sorted((a, b))
        return (low + high) // 2 if high - low > 1 else None
    mid = round((float(a) + float(b)) / 2, 4)
    return None if math.isclose(mid, float(a)) or math.isclose(mid, float(b)) else mid


def match_rates(
    codec, image: np.ndarray, targets: Sequence[float], settings: Sequence | None = None
) -> dict[float, Encoded]:
    """For each target bpp, the encoding of ``image`` whose bpp is closest to it.

    The codec's sweep (``settings`` or its defaults, ordered from low to high rate) is encoded
    first; then, for each target, the two neighbouring settings that bracket it are bisected (an
    integer setting stops when no integer is left between them; a setting the codec refuses stops
    the search). Rate is assumed monotonic in the setting between two neighbours."""
    sweep = list(settings or codec.default_settings)
    if not sweep:
        raise ImgcompError(f"{codec.name}: no settings to search")
    done: dict[Any, Encoded] = {s: _encode(codec, image, s) for s in sweep}
    for target in targets:
        ordered = [done[s] for s in sweep]
        low = [e for e in ordered if e.bpp <= target]
        high = [e for e in ordered if e.bpp >= target]
        if not low or not high:
            continue
        a, b = max(low, key=lambda e: e.bpp), min(high, key=lambda e: e.bpp)
        for _ in range(_BISECTION_STEPS):
            mid = _midpoint(a.setting, b.setting)
            if mid is None or mid in done:
                break
            try:
                done[mid] = _encode(codec, image, mid)
            except ImgcompError:
                break
            if done[mid].bpp <= target:
                a = done[mid]
            else:
                b = done[mid]
    return {t: min(done.values(), key=lambda e: (abs(e.bpp - t), e.bpp)) for t in targets}


def degrade(image: np.ndarray) -> np.ndarray:
    """A heavily degraded copy for attention checks: Gaussian blur (radius 1/40 of the shorter
    side, at least 3 px) and JPEG at quality 5, so it is unmistakably worse than any study
    reconstruction."""
    radius = max(3.0, min(image.shape[:2]) / 40)
    blurred = Image.fromarray(image, "RGB").filter(ImageFilter.GaussianBlur(radius))
    buffer = io.BytesIO()
    blurred.save(buffer, format="JPEG", quality=5)
    buffer.seek(0)
    return np.array(Image.open(buffer).convert("RGB"))


def _save_png(array: np.ndarray, folder: Path) -> str:
    image_id = new_image_id()
    Image.fromarray(array, "RGB").save(folder / f"{image_id}.png", format="PNG")
    return image_id


def _parse_rates(rates: Sequence[float]) -> list[float]:
    values = [float(r) for r in rates]
    if not values:
        raise ImgcompError("no target rates given")
    for value in values:
        if not math.isfinite(value) or value <= 0 or value > 24:
            raise ImgcompError(f"target rate {value:g} bpp: must be in (0, 24]")
    if len(set(values)) != len(values):
        raise ImgcompError("a target rate is listed twice")
    return sorted(values)


def create_study(
    image_dir: str | Path,
    codecs: Sequence[str],
    out: str | Path,
    *,
    rates: Sequence[float] = DEFAULT_RATES,
    tolerance: float = DEFAULT_TOLERANCE,
    settings: dict[str, Sequence] | None = None,
    trials_per_rater: int | None = None,
    attention_checks: int = 3,
    title: str = "Which image is closer to the original?",
    force: bool = False,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Build a study folder ``out``: ``study.json`` and ``images/<id>.png``; returns the definition.

    ``codecs``: at least two registered codec names. ``tolerance``: relative, a reconstruction is
    usable at target ``t`` if ``|bpp - t| <= tolerance * t``. ``trials_per_rater``: comparisons
    each rater sees (default: all of them), plus ``attention_checks`` attention trials.
    An existing ``out`` is refused unless ``force`` (then it is replaced)."""
    from imgcomp.codecs import get_codec, parse_codec_names
    from imgcomp.data.folder import list_images

    names = parse_codec_names(",".join(codecs))
    if len(names) < 2:
        raise ImgcompError("a 2AFC study needs at least two codecs")
    targets = _parse_rates(rates)
    if not 0 < tolerance < 1:
        raise ImgcompError(f"tolerance must be in (0, 1), got {tolerance:g}")
    if trials_per_rater is not None and trials_per_rater < 1:
        raise ImgcompError(f"trials per rater must be at least 1, got {trials_per_rater}")
    if attention_checks < 0:
        raise ImgcompError(f"attention checks must be >= 0, got {attention_checks}")
    for name in settings or {}:
        if name not in names:
            raise ImgcompError(f"settings given for codec {name!r}, which is not in the study")
    out = Path(out)
    if out.exists() or out.is_symlink():
        if not force:
            raise ImgcompError(f"{out}: exists (use --force to replace it)")
        if not out.is_dir() or out.is_symlink() or (any(out.iterdir()) and not (out / DEFINITION_NAME).is_file()):
            raise ImgcompError(f"{out}: not a study folder; --force replaces only a study folder")
        if any(out.glob(f"{DEFAULT_DB_NAME}*")):
            raise ImgcompError(f"{out}: holds votes ({DEFAULT_DB_NAME}); move them away before replacing the study")
    paths = list_images(image_dir)
    loaded = {path: load_image(path) for path in paths}  # unreadable images fail before any output
    if len({path.name for path in paths}) != len(paths):
        raise ImgcompError(f"{image_dir}: two images share a name")
    codec_objects = {name: get_codec(name) for name in names}

    staging = out.with_name(f".{out.name}.partial")
    if staging.exists():
        shutil.rmtree(staging)
    folder = staging / IMAGES_DIR
    folder.mkdir(parents=True)
    try:
        definition = _build(loaded, codec_objects, targets, tolerance, settings or {}, folder, progress)
        definition.update({
            "title": title,
            "session": {"trials_per_rater": trials_per_rater, "attention_checks": attention_checks},
        })
        text = json.dumps(definition, indent=1, sort_keys=False) + "\n"
        (staging / DEFINITION_NAME).write_text(text)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return definition


def _build(loaded, codec_objects, targets, tolerance, settings, folder, progress):
    images: dict[str, Any] = {}
    reconstructions: dict[str, Any] = {}
    comparisons: list[dict[str, Any]] = []
    attention: list[dict[str, Any]] = []
    unmatched: list[dict[str, Any]] = []
    for path, image in loaded.items():
        height, width = image.shape[:2]
        reference = _save_png(image, folder)
        images[reference] = {"name": path.name, "sha256": file_sha256(path), "width": width, "height": height}
        usable: dict[float, dict[str, str]] = {t: {} for t in targets}
        for name, codec in codec_objects.items():
            if progress:
                progress(f"{path.name}: {name}")
            matched = match_rates(codec, image, targets, settings.get(name))
            for target, enc in matched.items():
                within = abs(enc.bpp - target) <= tolerance * target
                if not within:
                    unmatched.append({"image": reference, "codec": name, "target_bpp": target,
                                      "closest_bpp": round(enc.bpp, 5), "setting": enc.setting})
                    continue
                recon = _save_png(enc.decoded, folder)
                reconstructions[recon] = {
                    "image": reference, "codec": name, "target_bpp": target, "setting": enc.setting,
                    "bytes": enc.bytes, "bpp": round(enc.bpp, 6),
                }
                usable[target][name] = recon
        for target in targets:
            for a, b in itertools.combinations(sorted(usable[target]), 2):
                key = f"{reference}:{target}:{a}:{b}"
                comparisons.append({
                    "id": hashlib.sha256(key.encode()).hexdigest()[:ID_HEX],
                    "image": reference, "target_bpp": target,
                    "a": usable[target][a], "b": usable[target][b],
                })
        attention.append({"image": reference, "original": _save_png(image, folder),
                          "degraded": _save_png(degrade(image), folder)})
    if not comparisons:
        raise ImgcompError(
            "no codec pair is within the rate tolerance at any target rate; try other rates, a larger "
            "--tolerance or more --settings"
        )
    return {
        "version": DEFINITION_VERSION,
        "kind": "imgcomp 2AFC study",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "rates": targets,
        "tolerance": tolerance,
        "matching": "per image, codec and target: the setting whose bpp is closest to the target "
                    "(default sweep, then bisection); pairs only where both are within tolerance",
        "codecs": {name: codec.describe() for name, codec in codec_objects.items()},
        "images": images,
        "reconstructions": reconstructions,
        "comparisons": comparisons,
        "attention": attention,
        "unmatched": unmatched,
    }
