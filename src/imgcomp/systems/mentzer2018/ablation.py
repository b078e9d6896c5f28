"""Table 1 of Mentzer et al. (2018): the context model's share of the rate, measured as real files.

The same symbol volumes (the shipped auto-encoder's, per image and quality) are range-coded with
four models, and the payload bytes (+ the container's header, the same for all) give the bpp:

- ``uniform``: every symbol 1/L;
- ``zeroth``: a per-channel histogram, adaptive (counts start at 1 and grow as symbols are
  coded, so nothing is sent up front; the decoder keeps the same counts);
- ``first``: adaptive counts conditioned on the previous symbol in coding (raster) order;
- ``cnn``: the 3-D masked CNN P (float wavefront coder, as the shipped codec), and ``cnn-int``:
  the integer-exact P (:mod:`imgcomp.systems.mentzer2018.integer_context`) when given.

The paper, at one operating point on Kodak: 0.646 / 0.642 / 0.627 / 0.579 bpp.
``python -m imgcomp.systems.mentzer2018.ablation [IMAGES...]`` prints the table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from imgcomp.entropy.range_coder import SymbolEncoder

PAPER_BPP = {"uniform": 0.646, "zeroth": 0.642, "first": 0.627, "cnn": 0.579}
HEADER_BYTES = 0  # set from the container at run time (the same for every model)


def _adaptive_rows(contexts: np.ndarray, symbols: np.ndarray, num_contexts: int, L: int) -> np.ndarray:
    """Probability rows of an adaptive count model: for symbol i with context c, counts of each
    symbol among earlier symbols with context c, plus 1 (Laplace), normalised."""
    n = symbols.size
    keys = contexts * L + symbols
    onehot = np.zeros((n, num_contexts * L), np.int32)
    onehot[np.arange(n), keys] = 1
    before = np.cumsum(onehot, axis=0) - onehot  # counts strictly before i
    counts = before.reshape(n, num_contexts, L)[np.arange(n), contexts] + 1
    return counts / counts.sum(axis=1, keepdims=True)


def model_rows(name: str, symbols: np.ndarray, L: int) -> np.ndarray:
    """Probability rows (n, L) for the (K, H, W) volume in raster order."""
    K = symbols.shape[0]
    flat = symbols.reshape(-1).astype(np.int64)
    if name == "uniform":
        return np.full((flat.size, L), 1.0 / L)
    if name == "zeroth":  # channel by channel: each channel's counts see only that channel
        return np.concatenate([
            _adaptive_rows(np.zeros(channel.size, np.int64), channel.reshape(-1).astype(np.int64), 1, L)
            for channel in symbols]) if K else np.zeros((0, L))
    if name == "first":
        previous = np.concatenate([[L], flat[:-1]])  # context L: no previous symbol
        return _adaptive_rows(previous, flat, L + 1, L)
    raise ValueError(name)


def coded_bytes(name: str, symbols: np.ndarray, L: int) -> tuple[int, float]:
    """(payload bytes, ideal bits) of one volume under a non-CNN model."""
    flat = symbols.reshape(-1).astype(np.int64)
    if flat.size == 0:
        return 0, 0.0
    rows = model_rows(name, symbols, L)
    encoder = SymbolEncoder()
    encoder.push(flat, rows)
    bits = float(-np.log2(rows[np.arange(flat.size), flat]).sum())
    return len(encoder.finish()), bits


def ablation(images: dict[str, np.ndarray], qualities: list[int], integer_params=None) -> list[dict]:
    """One row per (image, quality): bytes of each model's payload, for the default shipped model."""
    from imgcomp import container
    from imgcomp.systems.mentzer2018.stream import latent_tiles
    from imgcomp.systems.mentzer2018.wavefront import WavefrontContextModel
    from imgcomp.systems.mentzer2018.integer_context.measure import symbol_volume
    from imgcomp.zoo import get_model

    loaded = get_model()
    codec = loaded.model
    L = codec.num_symbols
    header = len(container.pack(container.Header(768, 512, 1, container.model_tag(loaded.weights_sha256), 1, 1), {container.SECTION_SYSTEM: b""}))
    rows = []
    for image_name, pixels in images.items():
        for q in qualities:
            symbols = symbol_volume(codec, pixels, q)
            row = {"image": image_name, "quality": q, "pixels": pixels.shape[0] * pixels.shape[1], "header": header}
            for name in ("uniform", "zeroth", "first"):
                row[name], row[name + "_bits"] = coded_bytes(name, symbols.numpy(), L)
            paths = [("cnn", None)] + ([("cnn-int", integer_params)] if integer_params is not None else [])
            for name, params in paths:
                encoder, bits = SymbolEncoder(), 0.0
                for top, left, th, tw in latent_tiles(*symbols.shape[1:]) if symbols.shape[0] else []:
                    tile = symbols[:, top : top + th, left : left + tw].contiguous()
                    if params is None:
                        model = WavefrontContextModel(codec.context_model, codec.symbol_inputs(), tuple(tile.shape))
                        bits += model.encode(tile, encoder)
                    else:
                        from imgcomp.systems.mentzer2018.integer_context import IntegerWavefrontContextModel

                        bits += IntegerWavefrontContextModel(params, tuple(tile.shape)).encode(tile.numpy(), encoder)
                row[name], row[name + "_bits"] = len(encoder.finish()), bits
            rows.append(row)
    return rows


def summarise(rows: list[dict], names: list[str]) -> str:
    """Mean bpp per quality (file = header + payload) and the ratio to the CNN, beside the paper."""
    lines = ["quality | " + " | ".join(f"{n} bpp" for n in names) + " | " + " | ".join(f"{n}/cnn" for n in names)]
    for q in sorted({r["quality"] for r in rows}):
        sel = [r for r in rows if r["quality"] == q]
        bpp = {n: np.mean([8 * (r[n] + r["header"]) / r["pixels"] for r in sel]) for n in names}
        lines.append(f"{q} | " + " | ".join(f"{bpp[n]:.4f}" for n in names) + " | "
                     + " | ".join(f"{bpp[n] / bpp['cnn']:.3f}" for n in names))
    lines.append("paper (Kodak, one point) | " + " | ".join(f"{PAPER_BPP.get(n, float('nan')):.3f}" for n in names)
                 + " | " + " | ".join(f"{PAPER_BPP.get(n, float('nan')) / PAPER_BPP['cnn']:.3f}" for n in names))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from imgcomp.systems.mentzer2018.integer_context.measure import default_images
    from imgcomp.io import load_image

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("images", nargs="*")
    parser.add_argument("--qualities", default="1,2,3,4,5")
    parser.add_argument("--integer", help="also code with this integer P (.safetensors)")
    parser.add_argument("--limit", type=int, default=0)
    args = parser.parse_args(argv)
    images = {Path(p).stem: load_image(p) for p in args.images} if args.images else default_images()
    if args.limit:
        images = dict(list(images.items())[: args.limit])
    params = None
    if args.integer:
        from imgcomp.systems.mentzer2018.integer_context import load

        params = load(args.integer)
    rows = ablation(images, [int(q) for q in args.qualities.split(",")], params)
    names = ["uniform", "zeroth", "first", "cnn"] + (["cnn-int"] if params is not None else [])
    print(f"{len(images)} images: {', '.join(images)}")
    print(summarise(rows, names))


if __name__ == "__main__":
    main(sys.argv[1:])
