"""Time LPIPS on this machine: forward on one 768x512 image pair (the demo photo against its
JPEG), and forward + backward of a training step's distortion term at batch 8 x 128x128 crops
(as a DPL criterion would run it: gradient to the reconstruction only, network frozen).

    PYTHONPATH=src python scripts/lpips_bench.py [--threads 2] [--repeat 5] [--random-weights]

``--random-weights`` times the same architecture without fetching the ST-LPIPS weights (the time
does not depend on the values). Prints one JSON line per measurement; times are medians.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from imgcomp.lpips import LPIPS, lpips_network

ROOT = Path(__file__).resolve().parents[1]


def median_seconds(fn, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--random-weights", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--variant", default="shift_tolerant", choices=["shift_tolerant", "original"],
                        help="original: LPIPS v0.1's architecture, always with random weights here")
    parser.add_argument("--skip-forward", action="store_true", help="time the training step only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    image = Image.open(ROOT / "src/imgcomp/assets/demo.png").convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=30)
    a = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float().to(device)
    b = torch.from_numpy(np.array(Image.open(buffer).convert("RGB"))).permute(2, 0, 1)[None].float().to(device)
    rng = torch.Generator().manual_seed(0)
    crops_x = torch.stack([a[0, :, r : r + 128, c : c + 128] for r, c in
                           torch.randint(0, 384, (8, 2), generator=rng).tolist()])
    crops_y = (crops_x + 8 * torch.randn(crops_x.shape, generator=rng).to(device)).clamp(0, 255)

    for net in ("alex", "vgg"):
        random = args.random_weights or args.variant == "original"
        model = (LPIPS(net, args.variant) if random else lpips_network(net)).to(device)

        def forward() -> None:
            with torch.no_grad():
                model(a, b)
            sync()

        def train_step() -> None:
            x_hat = crops_y.clone().requires_grad_(True)
            model(crops_x, x_hat).mean().backward()
            sync()

        record = {"net": net, "variant": args.variant, "device": str(device), "threads": args.threads}
        if not args.skip_forward:
            record["forward_768x512_s"] = round(median_seconds(forward, args.repeat), 4)
        record["fwd_bwd_8x128x128_s"] = round(median_seconds(train_step, args.repeat), 4)
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
