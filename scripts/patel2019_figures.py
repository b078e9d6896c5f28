"""Figures and numbers of docs/patel2019.md: side-by-side crops at equal rate, and checkerboard
artefacts of the k5/s2 (Mentzer et al.) and k2/s2 (Patel et al.) decoders.

    PYTHONPATH=src python scripts/patel2019_figures.py crops IMAGE --bpp 0.23 --bpp 0.37 \
        --crop x,y,w,h --out docs/results/patel2019/
    PYTHONPATH=src python scripts/patel2019_figures.py checkerboard IMAGES... --quality 3 \
        --out docs/results/patel2019/checkerboard.json --figure docs/results/patel2019/checkerboard.png \
        --crop x,y,w,h

Crops: every codec as the largest file not above the target (learned models: `imgcomp encode
--target-bpp`, i.e. quality and low-pass layer chosen per image; classical codecs: the largest
integer quality whose file fits), titled with whole-image bpp, PSNR, MS-SSIM and ST-LPIPS AlexNet.

Checkerboard: a transposed convolution of stride 2 whose kernel is not a multiple of 2 overlaps
unevenly and can leave a pattern of period 2 (4, 8 after three of them) in the output (Odena et al.
2016). Its measure here: the reconstruction error ``x_hat - x``, averaged over all 8x8 blocks of the
image at each of the 64 positions within a block (per channel, block-mean removed): what is left
is the part of the error that repeats with period 8 (and so 2 and 4). Its RMS (in 0-255 units) is
reported, and for the original's own 8x8-periodic content as the floor. JPEG, whose 8x8 blocks
are such a pattern, is a positive control.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from imgcomp.codecs import get_codec
from imgcomp.io import load_image
from imgcomp.lpips import lpips
from imgcomp.metrics import bits_per_pixel, ms_ssim, psnr

LEARNED = ("mentzer2018/cpu-colour-lp", "patel2019/dpc")
CLASSICAL = ("jpeg420", "webp", "avif444")
LABELS = {
    "mentzer2018/cpu-colour-lp": "MS-SSIM model (k5/s2)",
    "patel2019/dpc": "DPC model (k2/s2)",
    "jpeg420": "JPEG 4:2:0",
    "webp": "WebP",
    "avif444": "AVIF 4:4:4",
}


def at_rate(name: str, image: np.ndarray, target: float) -> dict:
    """``name``'s largest file of ``image`` not above ``target`` bpp, decoded, with its metrics."""
    height, width = image.shape[:2]
    if name in LEARNED:
        from imgcomp.api import decode_image
        from imgcomp.target import encode_to_target

        result = encode_to_target(image, max_bpp=target, model=name)
        data, setting = result.result.data, f"quality {result.result.quality}"
        decoded = decode_image(data, model=name)
    else:
        codec = get_codec(name)
        low, high = min(codec.default_settings), max(codec.default_settings)
        best = None
        while low <= high:  # file size grows with the quality setting
            middle = (low + high) // 2
            candidate = codec.encode(image, middle)
            if bits_per_pixel(len(candidate), height, width) <= target:
                best, low = (middle, candidate), middle + 1
            else:
                high = middle - 1
        if best is None:
            best = (min(codec.default_settings), codec.encode(image, min(codec.default_settings)))
        setting, data = f"quality {best[0]}", best[1]
        decoded = codec.decode(data)
    return {
        "codec": name, "setting": setting, "bpp": bits_per_pixel(len(data), height, width),
        "psnr": psnr(image, decoded), "ms_ssim": ms_ssim(image, decoded), "lpips_alex": lpips(image, decoded),
        "image": decoded,
    }


def crops(args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    image = load_image(args.image)
    x, y, w, h = (int(v) for v in args.crop.split(","))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = {}
    for target in args.bpp:
        panels = [at_rate(name, image, target) for name in LEARNED + CLASSICAL]
        table[str(target)] = [{k: v for k, v in p.items() if k != "image"} for p in panels]
        figure, grid = plt.subplots(2, 3, figsize=(3 * 4.2, 2 * (4.2 * h / w + 0.7)))
        for axes, panel in zip(grid.flat, [{"codec": "original", "image": image}] + panels):
            axes.axis("off")
            axes.imshow(panel["image"][y : y + h, x : x + w], interpolation="nearest")
            if panel["codec"] == "original":
                axes.set_title("Original", fontsize=9)
            else:
                axes.set_title(
                    f"{LABELS[panel['codec']]} ({panel['setting']})\n{panel['bpp']:.3f} bpp, {panel['psnr']:.2f} dB, "
                    f"MS-SSIM {panel['ms_ssim']:.4f}, LPIPS {panel['lpips_alex']:.3f}", fontsize=8,
                )
        figure.suptitle(
            f"{Path(args.image).name}, each codec's largest file within {target} bpp; crop x={x}, y={y}, {w}x{h}; "
            "metrics on the whole image (LPIPS: ST-LPIPS AlexNet, lower is better)", fontsize=8.5,
        )
        figure.tight_layout()
        figure.savefig(out / f"crops_{target:g}bpp.png", dpi=110)
        plt.close(figure)
        for p in table[str(target)]:
            print(f"{target:g} bpp  {LABELS[p['codec']]:<26} {p['setting']:<11} {p['bpp']:.3f} bpp  "
                  f"{p['psnr']:.2f} dB  MS-SSIM {p['ms_ssim']:.4f}  LPIPS {p['lpips_alex']:.4f}")
    (out / "crops.json").write_text(json.dumps({"image": Path(args.image).name, "crop": [x, y, w, h],
                                                "targets": table}, indent=1) + "\n")


def periodic_error(image: np.ndarray, decoded: np.ndarray, period: int = 8) -> float:
    """RMS of the error's mean over all ``period`` x ``period`` blocks (block means removed)."""
    h, w = (s - s % period for s in image.shape[:2])
    error = decoded[:h, :w].astype(np.float64) - image[:h, :w].astype(np.float64)
    blocks = error.reshape(h // period, period, w // period, period, 3)
    pattern = blocks.mean(axis=(0, 2))  # (period, period, 3)
    pattern -= pattern.mean(axis=(0, 1), keepdims=True)
    return float(np.sqrt((pattern**2).mean()))


def checkerboard(args: argparse.Namespace) -> None:
    from imgcomp.api import compress, decode_image

    rows = []
    for path in args.images:
        image = load_image(path)
        row = {"image": Path(path).name, "floor": periodic_error(image, np.zeros_like(image) + image.mean().astype(np.uint8))}
        for name in LEARNED:
            decoded = decode_image(compress(image, quality=args.quality, model=name), model=name)
            row[name] = periodic_error(image, decoded)
        jpeg = get_codec("jpeg420")
        row["jpeg420 q50"] = periodic_error(image, jpeg.decode(jpeg.encode(image, 50)))
        rows.append(row)
        print(json.dumps(row))
    keys = [k for k in rows[0] if k != "image"]
    summary = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    print("mean:", json.dumps(summary))
    Path(args.out).write_text(json.dumps({"quality": args.quality, "period": 8, "mean": summary, "images": rows}, indent=1) + "\n")
    if args.figure:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        image = load_image(args.images[0])
        x, y, w, h = (int(v) for v in args.crop.split(","))
        panels = [("Original", image)] + [
            (f"{LABELS[n]}, quality {args.quality}", decode_image(compress(image, quality=args.quality, model=n), model=n))
            for n in LEARNED
        ]
        figure, grid = plt.subplots(1, 3, figsize=(12, 4.4 * h / w + 0.6))
        for axes, (title, array) in zip(grid, panels):
            axes.axis("off")
            axes.imshow(array[y : y + h, x : x + w], interpolation="nearest")
            axes.set_title(title, fontsize=9)
        figure.suptitle(f"{Path(args.images[0]).name}, crop x={x}, y={y}, {w}x{h} (shown enlarged, nearest neighbour)", fontsize=8.5)
        figure.tight_layout()
        figure.savefig(args.figure, dpi=110)
        plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dpc", default="patel2019/dpc", help="the DPC model (a shipped name or a model folder)")
    sub = parser.add_subparsers(dest="command", required=True)
    one = sub.add_parser("crops")
    one.add_argument("image")
    one.add_argument("--bpp", type=float, action="append", required=True)
    one.add_argument("--crop", required=True)
    one.add_argument("--out", required=True)
    two = sub.add_parser("checkerboard")
    two.add_argument("images", nargs="+")
    two.add_argument("--quality", type=int, default=3)
    two.add_argument("--out", required=True)
    two.add_argument("--figure")
    two.add_argument("--crop", default="300,200,128,96")
    args = parser.parse_args(argv)
    global LEARNED
    if args.dpc != "patel2019/dpc":
        LEARNED = (LEARNED[0], args.dpc)
        LABELS[args.dpc] = LABELS["patel2019/dpc"]
    import torch

    torch.set_num_threads(1)
    (crops if args.command == "crops" else checkerboard)(args)


if __name__ == "__main__":
    sys.exit(main())
