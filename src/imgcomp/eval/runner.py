"""Run codecs over a folder of images and record rate, quality and speed.

For every image x codec x setting: file bytes and bpp (whole file, and payload-only where the
format allows), PSNR, MS-SSIM (RGB) and YCbCr-weighted MS-SSIM (Rippel & Bourdev 2017, sec. 5),
optionally LPIPS (ST-LPIPS AlexNet or VGG-16, :mod:`imgcomp.lpips`; with the seconds it cost),
encode and decode seconds (``time.perf_counter`` around the codec call alone). Results go to a
JSON file rewritten atomically after every (image, codec) pair, so an interrupted run resumes
where it stopped. Work is spread over images with a process pool.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import fcntl
import json
import math
import multiprocessing
import os
import pickle
import platform
import signal
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from imgcomp.codecs import Setting, available_codecs, codec_factory, get_codec, register_codec
from imgcomp.errors import ImgcompError
from imgcomp.eval.results import (
    EvalRecord,
    ResultsFile,
    load_results,
    record_key,
    save_results,
)
from imgcomp.data.folder import list_images
from imgcomp.io import file_sha256, load_image
from imgcomp.metrics import bits_per_pixel, ms_ssim, ms_ssim_ycbcr, psnr



@dataclass
class EvalSummary:
    """What a call to :func:`evaluate_folder` did."""

    path: Path
    computed: int
    skipped: int
    seconds: float
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Task:
    image_path: str
    image_name: str
    image_sha256: str
    codec: str
    settings: tuple[Setting, ...]
    lpips: str | None = None


LPIPS_CHOICES = ("alex", "vgg", "none")
"""``--lpips``: the ST-LPIPS network of the LPIPS column, or none. Measured on a 768x512 pair with
one thread on a 2-core EPYC: AlexNet 1.0-2.4 s, VGG-16 3-8 s (docs/patel2019.md)."""


def lpips_config(net: str | None) -> dict[str, Any] | None:
    """What a results file's config records about its LPIPS column (None: no LPIPS)."""
    if net is None or net == "none":
        return None
    if net not in LPIPS_CHOICES:
        raise ImgcompError(f"--lpips must be one of {', '.join(LPIPS_CHOICES)}, got {net!r}")
    from imgcomp.lpips import STLPIPS_WHEEL

    return {"net": net, "variant": "shift_tolerant", "weights": STLPIPS_WHEEL.requirement}


def find_images(directory: str | os.PathLike) -> list[Path]:
    """Image files directly inside ``directory``, sorted (see :func:`imgcomp.data.list_images`)."""
    return list_images(directory)


def run_config(
    images: Mapping[str, str], codecs: Sequence[str], settings: Mapping[str, Sequence[Setting]],
    lpips: str | None = None,
) -> dict[str, Any]:
    """The identity of a run: image names with their sha256, each codec's full description
    (library version, fixed options, settings swept) and, if measured, the LPIPS network (a file
    without the key has no LPIPS column: those of imgcomp 0.5 and before, or ``--lpips none``)."""
    config: dict[str, Any] = {
        "images": dict(sorted(images.items())),
        "codecs": {name: {**get_codec(name).describe(), "settings": list(settings[name])} for name in codecs},
    }
    described = lpips_config(lpips)
    if described is not None:
        config["lpips"] = described
    return json.loads(json.dumps(config))  # as it will read back from the file (tuples -> lists)


def evaluate_folder(
    image_dir: str | os.PathLike,
    out: str | os.PathLike,
    codecs: Sequence[str] | None = None,
    *,
    settings: Mapping[str, Sequence[Setting]] | None = None,
    jobs: int | None = None,
    force: bool = False,
    progress: bool = False,
    lpips: str | None = None,
) -> EvalSummary:
    """Evaluate ``codecs`` (default: every baseline codec) on every image in ``image_dir``.

    ``lpips`` (``"alex"`` or ``"vgg"``; None or ``"none"``: not measured) adds the ST-LPIPS
    distance of every reconstruction; its weights are fetched (or found in the cache) before any
    work, and it is part of the run's identity.

    ``settings`` overrides a codec's default sweep. An existing ``out`` from the same run
    configuration is resumed (finished entries are skipped); one from a different configuration is
    refused unless ``force``, which starts afresh. ``jobs`` worker processes (default
    ``min(2, cpu count)``) share the (image, codec) pairs.
    """
    started = time.perf_counter()
    out = Path(out)
    if out.is_dir():
        raise ImgcompError(f"{out}: is a folder; --out needs a file name such as results.json")
    codec_names = list(codecs) if codecs else available_codecs(baseline_only=True)
    for name in codec_names:
        codec_factory(name)  # unknown names fail here, before any work
    sweep = {
        name: tuple((settings or {}).get(name) or get_codec(name).default_settings) for name in codec_names
    }
    for name in settings or {}:
        if name not in codec_names:
            raise ImgcompError(f"settings given for codec {name!r}, which is not being evaluated")
    for name, values in sweep.items():
        if not values:
            raise ImgcompError(f"codec {name!r} has no settings to evaluate")
        if len({float(v) for v in values}) != len(values):
            raise ImgcompError(f"codec {name!r}: a setting is listed twice")
    jobs = default_jobs() if jobs is None else jobs
    if jobs < 1:
        raise ImgcompError(f"--jobs must be at least 1, got {jobs}")

    image_paths = find_images(image_dir)
    for path in image_paths:
        load_image(path)  # an unreadable image fails now, before any output is written
    images = {path.name: file_sha256(path) for path in image_paths}
    config = run_config(images, codec_names, sweep, lpips)
    lpips_net = config.get("lpips", {}).get("net")
    if lpips_net is not None:
        from imgcomp.lpips import lpips_network

        lpips_network(lpips_net)  # fetched now, once, not by every worker
    with _exclusive_lock(out):
        results = _open_results(out, config, force)
        results.image_dir = str(Path(image_dir).resolve())
        return _run(results, out, image_paths, images, codec_names, sweep, jobs, progress, started, lpips_net)


def _run(
    results: ResultsFile,
    out: Path,
    image_paths: list[Path],
    images: dict[str, str],
    codec_names: list[str],
    sweep: dict[str, tuple[Setting, ...]],
    jobs: int,
    progress: bool,
    started: float,
    lpips_net: str | None = None,
) -> EvalSummary:
    """Compute the missing (image, codec, setting) entries, saving after every (image, codec)."""
    done = results.keys()
    tasks = []
    for path in image_paths:
        for name in codec_names:
            missing = tuple(s for s in sweep[name] if record_key(path.name, name, s) not in done)
            if missing:
                tasks.append(_Task(str(path), path.name, images[path.name], name, missing, lpips_net))
    total = sum(len(sweep[name]) for name in codec_names) * len(image_paths)
    to_compute = sum(len(task.settings) for task in tasks)
    if not tasks:
        return EvalSummary(out, 0, total, time.perf_counter() - started)

    run_info = {
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": 0.0,
        "computed": 0,
        "jobs": jobs,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "finished": False,
    }
    results.runs.append(run_info)
    save_results(out, results)
    seen_warnings: list[str] = []

    def collect(task_records: list[EvalRecord], task_warnings: list[str]) -> None:
        results.records.extend(task_records)
        run_info["computed"] += len(task_records)
        run_info["seconds"] = round(time.perf_counter() - started, 3)
        save_results(out, results)
        for message in task_warnings:
            if message not in seen_warnings:
                seen_warnings.append(message)
                warnings.warn(message, stacklevel=3)

    with _ProgressBar(progress, to_compute) as advance:
        if jobs == 1:
            for task in tasks:
                collect(*_run_task(task))
                advance(len(task.settings))
        else:
            _run_pool(tasks, codec_names, jobs, collect, advance)

    run_info["seconds"] = round(time.perf_counter() - started, 3)
    run_info["finished"] = True
    save_results(out, results)
    return EvalSummary(out, to_compute, total - to_compute, run_info["seconds"], seen_warnings)


@contextlib.contextmanager
def _exclusive_lock(out: Path) -> Iterator[None]:
    """Hold an advisory lock beside ``out`` so two runs never write the same results file."""
    lock_path = out.with_name(f".{out.name}.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ImgcompError(f"{out}: another 'imgcomp eval' is writing it") from None
        try:
            yield
        finally:
            lock_path.unlink(missing_ok=True)


def default_jobs() -> int:
    """``min(2, cpu count)``."""
    return max(1, min(2, os.cpu_count() or 1))


def _open_results(out: Path, config: dict[str, Any], force: bool) -> ResultsFile:
    if force or not out.exists():
        return ResultsFile(config=config)
    try:
        existing = load_results(out)
    except ImgcompError as exc:
        raise ImgcompError(f"{exc}; refusing to overwrite it (use --force)") from None
    if existing.config != config:
        raise ImgcompError(
            f"{out}: results of a different run ({_config_difference(existing.config, config)}); "
            "use --force or another --out"
        )
    existing.records = [
        record
        for record in existing.records
        if config["images"].get(record.image) == record.image_sha256
        and config["codecs"].get(record.codec, {}).get("library") == record.library
    ]
    return existing


def _config_difference(old: dict[str, Any], new: dict[str, Any]) -> str:
    if old.get("images") != new["images"]:
        return "the images differ"
    if old.get("lpips") != new.get("lpips"):
        return f"LPIPS differs: {_lpips_name(old)} there, {_lpips_name(new)} now (see --lpips)"
    old_codecs = old.get("codecs", {})
    if set(old_codecs) != set(new["codecs"]):
        return "the codecs differ"
    for name, description in new["codecs"].items():
        if old_codecs[name] != description:
            changed = sorted(k for k in description if old_codecs[name].get(k) != description[k])
            return f"{name}: {', '.join(changed)} differ"
    return "the configuration differs"


def _lpips_name(config: dict[str, Any]) -> str:
    described = config.get("lpips")
    return "none" if not described else str(described.get("net"))


def _run_pool(tasks, codec_names, jobs, collect, advance) -> None:
    factories = {name: codec_factory(name) for name in codec_names}
    try:
        pickle.dumps(factories)
    except Exception as exc:
        raise ImgcompError(
            f"a codec factory cannot be sent to worker processes ({exc}); register a class or a "
            "module-level function, or use --jobs 1"
        ) from None
    context = multiprocessing.get_context("spawn")  # fork after torch has started threads is unsafe
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=min(jobs, len(tasks)),
        mp_context=context,
        initializer=_init_worker,
        initargs=(factories,),
    ) as pool:
        try:
            futures = {pool.submit(_run_task, task): task for task in tasks}
            for future in concurrent.futures.as_completed(futures):
                collect(*future.result())
                advance(len(futures[future].settings))
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def _init_worker(factories: dict[str, Any]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops the pool
    known = set(available_codecs())
    for name, factory in factories.items():
        if name not in known:
            register_codec(name, factory)


_WARMED_UP: set[str] = set()


def _warm_up(codec_name: str, setting: Setting) -> None:
    """One throw-away encode/decode, so library start-up is not timed as the first image's cost."""
    if codec_name in _WARMED_UP:
        return
    _WARMED_UP.add(codec_name)
    codec = get_codec(codec_name)
    ramp = np.linspace(0, 255, 64 * 64 * 3).astype(np.uint8).reshape(64, 64, 3)
    codec.decode(codec.encode(ramp, setting))


def _run_task(task: _Task) -> tuple[list[EvalRecord], list[str]]:
    """Evaluate one codec on one image at the task's settings (runs in a worker process)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image = load_image(task.image_path)
        codec = get_codec(task.codec)
        library = codec.library_version()
        _warm_up(task.codec, task.settings[len(task.settings) // 2])
        height, width = image.shape[:2]
        with _torch_threads(1):
            scorer = _LpipsScorer(task, image)
            records = [_measure(codec, library, image, task, s, width, height, scorer) for s in task.settings]
    messages = [str(w.message) for w in caught]
    return records, messages


@contextlib.contextmanager
def _torch_threads(count: int) -> Iterator[None]:
    """Metrics run single-threaded: parallelism comes from worker processes, and multi-threaded
    torch on a busy machine spins instead of working."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _measure(
    codec, library: str, image: np.ndarray, task: _Task, setting: Setting, width: int, height: int,
    scorer: _LpipsScorer | None = None,
) -> EvalRecord:
    begin = time.perf_counter()
    data = codec.encode(image, setting)
    encode_seconds = time.perf_counter() - begin
    begin = time.perf_counter()
    decoded = codec.decode(data)
    decode_seconds = time.perf_counter() - begin
    if decoded.shape != image.shape or decoded.dtype != np.uint8:
        raise ImgcompError(
            f"{task.codec}: decoded {task.image_name} at {setting} as {decoded.dtype} {decoded.shape}, "
            f"expected uint8 {image.shape}"
        )
    header = codec.header_bytes(data)
    payload = None if header is None else len(data) - header
    distance, distance_seconds = (None, None) if scorer is None else scorer(decoded)
    return EvalRecord(
        image=task.image_name,
        image_sha256=task.image_sha256,
        width=width,
        height=height,
        codec=task.codec,
        library=library,
        setting=setting,
        bytes=len(data),
        bpp=bits_per_pixel(len(data), height, width),
        payload_bytes=payload,
        payload_bpp=None if payload is None else bits_per_pixel(payload, height, width),
        psnr=_finite_or_none(psnr(image, decoded)),
        ms_ssim=_ms_ssim_or_none(ms_ssim, image, decoded, task.image_name),
        ms_ssim_ycbcr=_ms_ssim_or_none(ms_ssim_ycbcr, image, decoded, task.image_name),
        encode_seconds=encode_seconds,
        decode_seconds=decode_seconds,
        lpips=distance,
        lpips_net=task.lpips if distance is not None else None,
        lpips_seconds=distance_seconds,
    )


class _LpipsScorer:
    """ST-LPIPS of the task's network between its image and each reconstruction, with the seconds
    each took; the image's features are computed once per task (:meth:`imgcomp.lpips.LPIPS.reference`)
    and their cost is shared among its settings. None when not asked for, or the image is too
    small for the network (with a warning)."""

    def __init__(self, task: _Task, image: np.ndarray) -> None:
        self.task = task
        self.network = None
        self.reference = None
        self.reference_seconds = 0.0
        self.settings = max(1, len(task.settings))
        if task.lpips is None:
            return
        import torch

        from imgcomp.lpips import lpips_network
        from imgcomp.tensors import as_image_tensor

        begin = time.perf_counter()
        self.network = lpips_network(task.lpips, download=False)
        try:
            with torch.no_grad():
                self.reference = self.network.reference(as_image_tensor(image))
        except ImgcompError as exc:
            warnings.warn(f"{task.image_name}: LPIPS recorded as null ({exc})", stacklevel=2)
            self.network = None
        self.reference_seconds = time.perf_counter() - begin

    def __call__(self, decoded: np.ndarray) -> tuple[float | None, float | None]:
        if self.network is None:
            return None, None
        import torch

        from imgcomp.tensors import as_image_tensor

        begin = time.perf_counter()
        with torch.no_grad():
            value = float(self.network.distance_to_reference(self.reference, as_image_tensor(decoded))[0])
        return value, time.perf_counter() - begin + self.reference_seconds / self.settings


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _ms_ssim_or_none(metric, image: np.ndarray, decoded: np.ndarray, name: str) -> float | None:
    try:
        return metric(image, decoded)
    except ImgcompError as exc:
        warnings.warn(f"{name}: MS-SSIM recorded as null ({exc})", stacklevel=2)
        return None


class _ProgressBar:
    """A rich progress bar on stderr (or nothing); ``advance(n)`` moves it on."""

    def __init__(self, enabled: bool, total: int) -> None:
        self._enabled = enabled
        self._total = total
        self._progress = None

    def __enter__(self):
        if not self._enabled:
            return lambda n: None
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("evaluating"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._progress.__enter__()
        task_id = self._progress.add_task("eval", total=self._total)
        return lambda n: self._progress.advance(task_id, n)

    def __exit__(self, *exc_info) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc_info)


def parse_settings_option(values: Iterable[str]) -> dict[str, list[Setting]]:
    """Parse ``["jpeg420=10,50,90", "webp=20,80"]`` into ``{"jpeg420": [10, 50, 90], ...}``."""
    parsed: dict[str, list[Setting]] = {}
    for value in values:
        name, sep, numbers = value.partition("=")
        name = name.strip()
        if not sep or not name or not numbers.strip():
            raise ImgcompError(f"--settings {value!r}: expected CODEC=S1,S2,... (e.g. jpeg420=10,50,90)")
        try:
            parsed[name] = [_parse_number(part) for part in numbers.split(",") if part.strip()]
        except ValueError:
            raise ImgcompError(f"--settings {value!r}: settings must be numbers") from None
    return parsed


def _parse_number(text: str) -> Setting:
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        value = float(text)
        if not math.isfinite(value):
            raise ValueError(text) from None
        return value
