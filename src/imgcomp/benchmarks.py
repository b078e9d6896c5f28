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

from imgcomp.codec import decode_image, encode_image
from imgcomp.entropy.range_coder import coder_probabilities
from imgcomp.io import load_image
from imgcomp.models.export import LoadedModel
from imgcomp.models.mentzer2018 import DOWNSAMPLING


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


def codec_speed(image_path: str, model: LoadedModel, runs: int = 5, refine_steps: int = 0) -> list[dict[str, Any]]:
    """Median encode/decode seconds, file size and rate vs. the model's estimate, per quality
    (encoding with ``refine_steps`` of latent refinement, :mod:`imgcomp.refine`)."""
    pixels = load_image(image_path)
    height, width = pixels.shape[:2]
    rows = []
    for quality in range(1, model.config.importance_heads + 1):
        encode_times, decode_times = [], []
        for _ in range(runs):
            result = encode_image(pixels, quality, model, refine_steps=refine_steps)
            encode_times.append(result.seconds)
            started = time.perf_counter()
            decode_image(result.data, model)
            decode_times.append(time.perf_counter() - started)
        rows.append({
            "quality": quality,
            "bytes": len(result.data),
            "header_bytes": result.header_bytes,
            "bpp": 8 * len(result.data) / (height * width),
            "payload_bits": 8 * result.payload_bytes,
            "estimated_bits": result.estimated_bits,
            "payload_over_estimate": 8 * result.payload_bytes / result.estimated_bits,
            "encode_s_median": statistics.median(encode_times),
            "decode_s_median": statistics.median(decode_times),
        })
    return rows


def naive_decode_seconds(image_path: str, model: LoadedModel, symbols_timed: int = 400) -> dict[str, Any]:
    """Time the naive order: one symbol at a time, P evaluated on the symbol's causal block
    (9x9x9, the receptive field of four 3x3x3 layers) as the original implementation does, and
    extrapolate to every symbol of the image. Only timing: nothing is decoded."""
    pixels = load_image(image_path)
    height, width = pixels.shape[:2]
    K = model.config.latent_channels
    h, w = -(-height // DOWNSAMPLING), -(-width // DOWNSAMPLING)
    total = K * h * w
    context = model.model.context_model
    rng = np.random.default_rng(0)
    features = context.conv_in.in_channels
    volume = torch.from_numpy(rng.standard_normal((features, K + 8, h + 8, w + 8)).astype(np.float32))
    started = time.perf_counter()
    with torch.no_grad():
        for index in range(symbols_timed):
            c, rest = divmod(index, h * w)
            r, col = divmod(rest, w)
            block = volume[:, c : c + 9, r : r + 9, col : col + 9][None]
            logits = context(block)[0, :, 4, 4, 4]
            coder_probabilities(logits[None].numpy())
    per_symbol = (time.perf_counter() - started) / symbols_timed
    return {"symbols": total, "seconds_per_symbol": per_symbol, "extrapolated_decode_s": per_symbol * total}


def peak_memory_large(model_dir: str, side: int = 4096) -> dict[str, Any]:
    """Encode and decode a ``side`` x ``side`` image in a fresh process; its peak RSS in MB."""
    script = f"""
import json, resource, time, numpy as np
from imgcomp.codec import encode_image, decode_image
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


def training_throughput(preset_name: str, steps: int = 5, batch_size: int = 8, crop: int = 128) -> dict[str, Any]:
    """Seconds per training step (forward, both losses, backward, both optimiser steps)."""
    from imgcomp.models import create_model, preset
    from imgcomp.training.losses import LossWeights, rate_distortion_loss

    torch.manual_seed(0)
    config = preset(preset_name)
    model = create_model(config.architecture, config)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.rand(batch_size, 3, crop, crop) * 255
    times = []
    for step in range(steps + 1):
        started = time.perf_counter()
        out = model(x, 0)
        terms = rate_distortion_loss(x, out, 0.3, LossWeights(), model.quantizer.regularization())
        optimizer.zero_grad()
        terms.total.backward()
        optimizer.step()
        if step:  # the first step warms up allocators and kernels
            times.append(time.perf_counter() - started)
    seconds = statistics.median(times)
    return {
        "preset": preset_name, "batch_size": batch_size, "crop": crop, "threads": torch.get_num_threads(),
        "seconds_per_step": seconds, "steps_per_s": 1 / seconds, "images_per_s": batch_size / seconds,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
