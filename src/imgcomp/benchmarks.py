"""Speed and cost figures: these are measurements, not tests (``imgcomp bench ...``)."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from imgcomp.api import decode_image, encode_image
from imgcomp.codecs.base import Codec, Setting
from imgcomp.io import load_image
from imgcomp.models.export import LoadedModel


def machine() -> dict[str, Any]:
    """What the timings were measured on: they differ by 2-3x between CPUs of the same core count."""
    cpu = platform.processor() or platform.machine()
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    cpu = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
    except OSError:  # not Linux
        pass
    vector = [name for name in ("avx512f", "avx2") if name in flags]
    return {
        "cpu": cpu, "vector_extensions": vector[:1], "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
    }


def _process_seconds(command: list[str], runs: int) -> float:
    """Median wall time of a whole command (interpreter start and imports included)."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def import_torch_seconds(runs: int = 3) -> float:
    """Whole-process ``python -c "import torch"``: the floor of any command that loads torch."""
    return _process_seconds([sys.executable, "-c", "import torch"], runs)


class _LearnedQuality:
    """One quality of a learned model: each :meth:`once` encodes the image, decodes it in-process
    with torch (and with the torch-free engine where the file allows it), and decodes it in a whole
    ``imgcomp decode`` process writing a PNG."""

    def __init__(self, pixels: np.ndarray, model: LoadedModel, quality: int, refine_steps: int, folder: str) -> None:
        self.pixels, self.model, self.quality, self.refine_steps = pixels, model, quality, refine_steps
        self.file = os.path.join(folder, f"{id(self)}-q{quality}.icz")
        self.result: Any = None
        self.torch_free: bool | None = None
        self.encode_s: list[float] = []
        self.decode_s: list[float] = []
        self.torch_s: list[float] = []
        self.process_s: list[float] = []

    def once(self) -> None:
        from imgcomp.api import _torch_free_model_for
        from imgcomp.container import unpack

        result = encode_image(self.pixels, self.quality, self.model, refine_steps=self.refine_steps)
        self.result = result
        self.encode_s.append(result.seconds)
        started = time.perf_counter()
        decode_image(result.data, self.model)
        self.torch_s.append(time.perf_counter() - started)
        if self.torch_free is None:
            self.torch_free = self.model.path is not None and _torch_free_model_for(
                unpack(result.data)[0], str(self.model.path)) is not None
        if self.torch_free:
            started = time.perf_counter()
            decode_image(result.data, str(self.model.path), engine="numpy")
            self.decode_s.append(time.perf_counter() - started)
        with open(self.file, "wb") as handle:
            handle.write(result.data)
        command = [sys.executable, "-m", "imgcomp", "decode", self.file, "-o", self.file + ".png", "--force"]
        if self.model.path is not None:
            command += ["--model", str(self.model.path)]
        self.process_s.append(_process_seconds(command, 1))

    def row(self) -> dict[str, Any]:
        result = self.result
        height, width = self.pixels.shape[:2]
        return {
            "quality": self.quality,
            "bytes": len(result.data),
            "header_bytes": result.header_bytes,
            "bpp": 8 * len(result.data) / (height * width),
            "payload_bits": 8 * result.payload_bytes,
            "estimated_bits": result.estimated_bits,
            "payload_over_estimate": 8 * result.payload_bytes / result.estimated_bits,
            "encode_s_median": statistics.median(self.encode_s),
            "decode_s_median": statistics.median(self.decode_s or self.torch_s),
            "decode_engine": "numpy" if self.torch_free else "torch",
            "decode_torch_s_median": statistics.median(self.torch_s),
            "decode_process_s_median": statistics.median(self.process_s),
        }


class _ClassicalSetting:
    """One setting of a classical codec: each :meth:`once` is an in-process encode and decode."""

    def __init__(self, pixels: np.ndarray, codec: Codec, setting: Setting) -> None:
        self.pixels, self.codec, self.setting = pixels, codec, setting
        self.data = b""
        self.encode_s: list[float] = []
        self.decode_s: list[float] = []

    def once(self) -> None:
        started = time.perf_counter()
        self.data = self.codec.encode(self.pixels, self.setting)
        self.encode_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        self.codec.decode(self.data)
        self.decode_s.append(time.perf_counter() - started)

    def row(self) -> dict[str, Any]:
        height, width = self.pixels.shape[:2]
        return {
            "setting": self.setting,
            "bytes": len(self.data),
            "header_bytes": self.codec.header_bytes(self.data),
            "bpp": 8 * len(self.data) / (height * width),
            "encode_s_median": statistics.median(self.encode_s),
            "decode_s_median": statistics.median(self.decode_s),
        }


def _round_robin(timers: Sequence[_LearnedQuality | _ClassicalSetting], runs: int) -> None:
    """``runs`` rounds of one :meth:`once` per timer; each round starts one timer later, so a change
    of load on a shared machine, or a cache one timer leaves cold for the next, hits all alike."""
    for round_ in range(runs):
        shift = round_ % len(timers) if timers else 0
        for timer in [*timers[shift:], *timers[:shift]]:
            timer.once()


def codec_speed(image_path: str, model: LoadedModel, runs: int = 5, refine_steps: int = 0) -> list[dict[str, Any]]:
    """Median encode/decode seconds, file size and rate vs. the model's estimate, per quality
    (encoding with ``refine_steps`` of latent refinement, :mod:`imgcomp.systems.mentzer2018.refine`).

    Decoding is timed in-process with each engine that can decode the file (``decode_s_median``:
    the default, torch-free where possible; ``decode_torch_s_median``: the torch model), and as a
    whole ``imgcomp decode`` process writing a PNG (``decode_process_s_median``). The qualities
    are timed round-robin (:func:`_round_robin`)."""
    return side_by_side(image_path, [model], {}, runs, refine_steps)[0]["rows"]


def default_settings_for(codec: Codec, pixels: np.ndarray, count: int = 5,
                         low_bpp: float = 0.1, high_bpp: float = 1.5) -> list[Setting]:
    """``count`` settings of ``codec.default_settings`` spanning ``low_bpp`` to ``high_bpp`` on
    ``pixels``: one survey encode per default setting (not timed), then for each of ``count``
    rates spaced evenly in log between the two, the setting whose rate is nearest in log. A codec
    that cannot span the range gives fewer (never a setting twice)."""
    sweep = list(codec.default_settings)
    if len(sweep) <= count:
        return sweep
    height, width = pixels.shape[:2]
    rates = np.log([max(8 * len(codec.encode(pixels, s)), 1) / (height * width) for s in sweep])
    chosen = {int(np.argmin(np.abs(rates - target))) for target in np.linspace(np.log(low_bpp), np.log(high_bpp), count)}
    return [sweep[i] for i in sorted(chosen)]


def side_by_side(image_path: str, models: Sequence[LoadedModel], codecs: Mapping[str, Sequence[Setting] | None],
                 runs: int = 5, refine_steps: int = 0) -> list[dict[str, Any]]:
    """Time learned ``models`` (every quality, as :func:`codec_speed`) and classical ``codecs``
    (by registry name: the given settings, or None for :func:`default_settings_for`) on one image,
    round-robin over every (codec, setting) in each of ``runs`` rounds; one entry per model, then
    per codec: ``{"name", "kind": "learned" | "classical", ..., "rows": [...]}`` with medians."""
    import tempfile

    from imgcomp.codecs import get_codec
    from imgcomp.zoo import model_name

    pixels = load_image(image_path)
    with tempfile.TemporaryDirectory() as folder:
        entries: list[tuple[dict[str, Any], list[Any]]] = []
        for model in models:
            timers = [_LearnedQuality(pixels, model, q, refine_steps, folder)
                      for q in range(1, model.system.qualities(model) + 1)]
            entries.append(({"name": model_name(model), "kind": "learned", "system": model.system.name,
                             "setting_name": "quality", "refine_steps": refine_steps}, timers))
        for name, settings in codecs.items():
            codec = get_codec(name)
            chosen = list(settings) if settings is not None else default_settings_for(codec, pixels)
            entries.append(({"name": name, "kind": "classical", "label": codec.label or name,
                             "library": codec.library_version(), "parameters": codec.parameters(),
                             "setting_name": codec.setting_name,
                             "settings_from": "--settings" if settings is not None else "default sweep, nearest 0.1-1.5 bpp"},
                            [_ClassicalSetting(pixels, codec, s) for s in chosen]))
        _round_robin([timer for _, timers in entries for timer in timers], runs)
        return [{**entry, "rows": [timer.row() for timer in timers]} for entry, timers in entries]


def peak_memory_large(model_dir: str, side: int = 4096) -> dict[str, Any]:
    """Encode and decode a ``side`` x ``side`` image in a fresh process; its peak RSS in MB."""
    script = f"""
import json, resource, time, numpy as np
from imgcomp.api import encode_image, decode_image
from imgcomp.zoo import get_model
model = get_model({model_dir!r})
rng = np.random.default_rng(0)
yy, xx = np.mgrid[0:{side}, 0:{side}]
image = np.clip(np.stack([xx % 256, yy % 256, (xx // 7 + yy // 5) % 256], -1) + rng.normal(0, 8, (1, 1, 3)), 0, 255).astype(np.uint8)
t = time.perf_counter(); result = encode_image(image, model=model); te = time.perf_counter() - t
t = time.perf_counter(); decode_image(result.data, model); td = time.perf_counter() - t
print(json.dumps({{"side": {side}, "bytes": len(result.data), "encode_s": te, "decode_s": td,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])
