"""File sizes and coding times of mentzer2018 stream version 1 (float P) vs 2 (integer P).

``PYTHONPATH=src python scripts/stream_sizes.py [--model M] [--qualities 1,2,3,4,5] [IMAGES...]``
(default image: demo.png; e.g. ``src/imgcomp/assets/demo.png data/val-textured/*.png`` for the
documented figures). Whole files as the API
writes them: per image and quality, E and D run once; the symbols are coded in both stream
versions, the low-pass layer is chosen once (from version 2's bits, as the API would; version 1's
bits differ by ~0.05%, which could flip a close choice) and coded in each version's coding; the
files are packed with each version's header. ``--check`` also writes both with ``encode_image``
and decodes them. Prints bytes per image and quality, then the totals per quality.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from imgcomp.api import decode_image, encode_image
from imgcomp.io import load_image
from imgcomp.zoo import get_model

DEMO = Path(__file__).resolve().parents[1] / "src" / "imgcomp" / "assets" / "demo.png"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("images", nargs="*")
    parser.add_argument("--model")
    parser.add_argument("--qualities", default="1,2,3,4,5")
    parser.add_argument("--time", type=int, default=0, metavar="RUNS",
                        help="instead: median seconds of encode_image / decode_image per version over RUNS runs")
    parser.add_argument("--check", action="store_true", help="also encode_image + decode every file (slow)")
    args = parser.parse_args(argv)
    loaded = get_model(args.model)
    paths = args.images or [str(DEMO)]
    qualities = [int(q) for q in args.qualities.split(",")]
    if args.time:
        return timing(loaded, paths, qualities, args.time)
    totals = {(q, v): 0 for q in qualities for v in (1, 2)}
    from imgcomp import container
    from imgcomp.entropy import SymbolEncoder
    from imgcomp.postfilter.lowpass import choose_lowpass, encode_offsets
    from imgcomp.systems.mentzer2018 import stream

    system = loaded.system
    for path in paths:
        pixels = load_image(path)
        height, width = pixels.shape[:2]
        for q in qualities:
            symbols = stream.image_symbols(loaded, pixels, q)
            payloads = {v: stream.encode_symbols(loaded, symbols, v) for v in (1, 2)}
            decoded = stream.reconstruct(loaded.model, symbols, height, width)
            settings, offsets = choose_lowpass(pixels, decoded, payloads[2][1])
            row = []
            for version in (1, 2):
                sections = {container.SECTION_SYSTEM: payloads[version][0]}
                if settings is not None:
                    section = SymbolEncoder()
                    encode_offsets(section, offsets, settings, system.lowpass_version(version))
                    sections[container.SECTION_LOWPASS] = section.finish()
                tag = system.model_tag(loaded.weights_sha256, loaded.path, version)
                data = container.pack(container.Header(width, height, q, tag, 1, version), sections)
                if args.check:
                    result = encode_image(pixels, q, loaded, keep_reconstruction=True, stream_version=version)
                    assert result.data == data, (path, q, version)
                    assert np.array_equal(decode_image(data), result.reconstruction), (path, q, version)
                totals[q, version] += len(data)
                row.append(len(data))
            print(f"{Path(path).stem:28s} q{q} v1 {row[0]:7d} v2 {row[1]:7d} ({100 * (row[1] / row[0] - 1):+.3f}%) "
                  f"low-pass {settings}", flush=True)
    print(f"\n{len(paths)} images; quality | v1 bytes | v2 bytes | change")
    for q in qualities:
        a, b = totals[q, 1], totals[q, 2]
        print(f"{q} | {a} | {b} | {100 * (b / a - 1):+.3f}%")


def timing(loaded, paths, qualities, runs: int) -> None:
    """Wall seconds of whole-file encode (API defaults: low-pass search) and decode, the two
    versions alternating run by run (a loaded machine slows both alike); median and minimum."""
    import statistics

    import torch

    print(f"torch threads {torch.get_num_threads()}, {runs} runs per version, alternating; median (min) seconds")
    for path in paths:
        pixels = load_image(path)
        for q in qualities:
            times = {v: ([], []) for v in (1, 2)}
            sizes = {}
            for version in (1, 2):
                encode_image(pixels, q, loaded, stream_version=version)  # warm: schedules, caches
            for _ in range(runs):
                for version in (1, 2):
                    start = time.perf_counter()
                    data = encode_image(pixels, q, loaded, stream_version=version).data
                    times[version][0].append(time.perf_counter() - start)
                    start = time.perf_counter()
                    decode_image(data, loaded)
                    times[version][1].append(time.perf_counter() - start)
                    sizes[version] = len(data)
            for version, (enc, dec) in times.items():
                print(f"{Path(path).stem} q{q} v{version}: encode {statistics.median(enc):.3f} ({min(enc):.3f}) s, decode "
                      f"{statistics.median(dec):.3f} ({min(dec):.3f}) s, {sizes[version]} bytes", flush=True)


if __name__ == "__main__":
    sys.exit(main())
