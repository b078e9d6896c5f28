"""Speed and cost figures: these are measurements, not tests (``imgcomp bench ...``)."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Any

import numpy as np
import torch

from imgcomp.api import decode_image, encode_image
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


def codec_speed(image_path: str, model: LoadedModel, runs: int = 5, refine_steps: int = 0) -> list[dict[str, Any]]:
    """Median encode/decode seconds, file size and rate vs. the model's estimate, per quality
    (encoding with ``refine_steps`` of latent refinement, :mod:`imgcomp.systems.mentzer2018.refine`).

    Decoding is timed in-process with each engine that can decode the file (``decode_s_median``:
    the default, torch-free where possible; ``decode_torch_s_median``: the torch model), and as a
    whole ``imgcomp decode`` process writing a PNG (``decode_process_s_median``)."""
    import tempfile
    from pathlib import Path

    from imgcomp.api import _torch_free_model_for
    from imgcomp.container import unpack

    pixels = load_image(image_path)
    height, width = pixels.shape[:2]
    rows = []
    for quality in range(1, model.system.qualities(model) + 1):
        encode_times, decode_times, torch_times = [], [], []
        for _ in range(runs):
            result = encode_image(pixels, quality, model, refine_steps=refine_steps)
            encode_times.append(result.seconds)
            started = time.perf_counter()
            decode_image(result.data, model)
            torch_times.append(time.perf_counter() - started)
        torch_free = model.path is not None and _torch_free_model_for(unpack(result.data)[0], str(model.path)) is not None
        for _ in range(runs if torch_free else 0):
            started = time.perf_counter()
            decode_image(result.data, str(model.path), engine="numpy")
            decode_times.append(time.perf_counter() - started)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "x.icz"
            path.write_bytes(result.data)
            command = [sys.executable, "-m", "imgcomp", "decode", str(path), "-o", str(Path(folder) / "x.png"), "--force"]
            if model.path is not None:
                command += ["--model", str(model.path)]
            process = _process_seconds(command, runs)
        rows.append({
            "quality": quality,
            "bytes": len(result.data),
            "header_bytes": result.header_bytes,
            "bpp": 8 * len(result.data) / (height * width),
            "payload_bits": 8 * result.payload_bytes,
            "estimated_bits": result.estimated_bits,
            "payload_over_estimate": 8 * result.payload_bytes / result.estimated_bits,
            "encode_s_median": statistics.median(encode_times),
            "decode_s_median": statistics.median(decode_times or torch_times),
            "decode_engine": "numpy" if torch_free else "torch",
            "decode_torch_s_median": statistics.median(torch_times),
            "decode_process_s_median": process,
        })
    return rows


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
