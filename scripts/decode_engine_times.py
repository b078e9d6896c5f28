"""Decode time per engine: whole ``imgcomp decode`` processes and in-process ``decode_image``.

``PYTHONPATH=src python scripts/decode_engine_times.py [--model M] [--qualities 1,3,5] [--runs 7]
[--engines auto,torch] [--out times.json] [IMAGE]`` (default image: the bundled demo.png).
Encodes the image once per quality, then in each of ``--runs`` rounds decodes every file with
every engine, round-robin (so a change of load on a shared machine hits all alike): once as a
whole process (``python -m imgcomp decode FILE -o PNG --force --engine E``: interpreter start,
imports, model loading, PNG writing) and once in-process (model cached). Prints and writes the
medians and minimums, the machine's load average before and after, and the largest pixel
difference between the engines' outputs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from imgcomp.api import decode_image, encode_image
from imgcomp.io import load_image

DEMO = Path(__file__).resolve().parents[1] / "src" / "imgcomp" / "assets" / "demo.png"


def _summary(times: list[float]) -> dict[str, float]:
    return {"median_s": statistics.median(times), "min_s": min(times), "runs": len(times)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", nargs="?", default=str(DEMO))
    parser.add_argument("--model", default="rippel2017/cpu-lp")
    parser.add_argument("--qualities", default="1,3,5")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--engines", default="auto,torch")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    qualities = [int(q) for q in args.qualities.split(",")]
    engines = args.engines.split(",")
    pixels = load_image(args.image)
    load_before = os.getloadavg()
    process: dict[tuple[int, str], list[float]] = {}
    in_process: dict[tuple[int, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        files = {}
        for q in qualities:
            files[q] = Path(folder) / f"q{q}.icz"
            files[q].write_bytes(encode_image(pixels, q, model=args.model).data)
        outputs = {(q, e): decode_image(files[q].read_bytes(), engine=e) for q in qualities for e in engines}  # warm
        for _ in range(args.runs):
            for q in qualities:
                data = files[q].read_bytes()
                for engine in engines:
                    command = [sys.executable, "-m", "imgcomp", "decode", str(files[q]), "-o", f"{files[q]}.png",
                               "--force", "--engine", engine]
                    started = time.perf_counter()
                    subprocess.run(command, check=True, capture_output=True)
                    process.setdefault((q, engine), []).append(time.perf_counter() - started)
                    started = time.perf_counter()
                    decode_image(data, engine=engine)
                    in_process.setdefault((q, engine), []).append(time.perf_counter() - started)
        sizes = {q: files[q].stat().st_size for q in qualities}
    rows = []
    for q in qualities:
        first = outputs[(q, engines[0])].astype(int)
        for engine in engines:
            difference = np.abs(outputs[(q, engine)] - first)
            rows.append({
                "quality": q, "engine": engine, "bytes": sizes[q],
                "process": _summary(process[(q, engine)]), "in_process": _summary(in_process[(q, engine)]),
                f"max_difference_vs_{engines[0]}": int(difference.max()),
                f"fraction_differing_vs_{engines[0]}": float((difference > 0).mean()),
            })
            print(f"q{q} {engine:>5}: process median {rows[-1]['process']['median_s']:.3f} s "
                  f"(min {rows[-1]['process']['min_s']:.3f}), in-process median "
                  f"{rows[-1]['in_process']['median_s'] * 1e3:.0f} ms (min {rows[-1]['in_process']['min_s'] * 1e3:.0f}), "
                  f"max diff vs {engines[0]} {int(difference.max())} on {(difference > 0).mean():.2e} of values")
    report = {
        "image": args.image, "model": args.model, "runs": args.runs, "cores": os.cpu_count(),
        "load_average_before": load_before, "load_average_after": os.getloadavg(), "rows": rows,
    }
    print(f"load average before {load_before[0]:.1f}, after {report['load_average_after'][0]:.1f}")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
