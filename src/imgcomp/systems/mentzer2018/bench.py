"""Benchmarks specific to Mentzer et al. (2018): the naive one-symbol-at-a-time decoding order the
wavefront replaces, and the training step's throughput."""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np
import torch

from imgcomp.entropy.range_coder import coder_probabilities
from imgcomp.io import load_image
from imgcomp.models.export import LoadedModel
from imgcomp.systems.mentzer2018.config import DOWNSAMPLING


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
    timed = min(symbols_timed, total)
    started = time.perf_counter()
    with torch.no_grad():
        for index in range(timed):
            c, rest = divmod(index, h * w)
            r, col = divmod(rest, w)
            block = volume[:, c : c + 9, r : r + 9, col : col + 9][None]
            logits = context(block)[0, :, 4, 4, 4]
            coder_probabilities(logits[None].numpy())
    per_symbol = (time.perf_counter() - started) / timed
    return {"symbols": total, "seconds_per_symbol": per_symbol, "extrapolated_decode_s": per_symbol * total}



def training_throughput(preset_name: str, steps: int = 5, batch_size: int = 8, crop: int = 128) -> dict[str, Any]:
    """Seconds per training step (forward, both losses, backward, both optimiser steps)."""
    from imgcomp.systems.mentzer2018.config import preset
    from imgcomp.systems.mentzer2018.model import ConditionalProbabilityCodec
    from imgcomp.systems.mentzer2018.objective import LossWeights, rate_distortion_loss

    torch.manual_seed(0)
    config = preset(preset_name)
    model = ConditionalProbabilityCodec(config)
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
