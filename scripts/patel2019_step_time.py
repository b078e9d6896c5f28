"""Seconds per training step of the cpu preset (batch 8 x 128x128, one thread) with the MS-SSIM
distortion and with Patel et al.'s DPC distortion on ST-LPIPS AlexNet and VGG-16: the k2/s2
decoder initialised from mentzer2018/cpu-colour-lp, as recipe cpu-dpc trains it.

    PYTHONPATH=src python scripts/patel2019_step_time.py --data data/train [--steps 6]

Prints one JSON line per distortion (median over the steps after the first two).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from imgcomp.systems.mentzer2018.training import MentzerTask, TrainConfig
from imgcomp.training.batches import StepBatches


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for criterion, net in (("ms_ssim", "alex"), ("dpc", "alex"), ("dpc", "vgg")):
        config = TrainConfig(
            data=args.data, init_from="mentzer2018/cpu-colour-lp", decoder_kernel=2, heads=5,
            head_target_bpp=[0.12, 0.22, 0.35, 0.52, 0.8], lowpass_block=16, lowpass_step=3,
            rate_through_context=False, criterion=criterion, lpips_net=net, lr=1e-4,
        )
        task = MentzerTask(config, Path(tempfile.mkdtemp()))
        task.train_mode()
        batches = StepBatches(config.data, 128, 8, 0, 1)
        times = []
        for step, x in batches.iterate(0, args.steps):
            begin = time.perf_counter()
            task.step(x, step)
            times.append(time.perf_counter() - begin)
        batches.close()
        print(json.dumps({"criterion": criterion, "lpips_net": net if criterion != "ms_ssim" else None,
                          "seconds_per_step": round(statistics.median(times[2:]), 3), "batch": 8, "crop": 128,
                          "threads": 1}))


if __name__ == "__main__":
    main()
