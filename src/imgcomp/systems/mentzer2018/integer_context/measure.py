"""Measure the integer-exact P against the float P on real latents (imports torch).

``python -m imgcomp.systems.mentzer2018.integer_context.measure [--out FILE.safetensors] [IMAGES...]``: builds the
integer model of the default shipped model (calibrated on ``--calibration-data`` photos), then codes each image's
symbol volumes at every quality with both paths and prints ideal bits and real coded bytes.
"""

from __future__ import annotations

import argparse
import glob
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from imgcomp.systems.mentzer2018.stream import _active_channels, latent_tiles
from imgcomp.systems.mentzer2018.wavefront import WavefrontContextModel
from imgcomp.entropy import SymbolDecoder, SymbolEncoder
from imgcomp.systems.mentzer2018.integer_context.convert import activation_ranges, calibration_inputs, integer_context_from_float
from imgcomp.systems.mentzer2018.integer_context.model import IntegerContextParams, save
from imgcomp.systems.mentzer2018.integer_context.wavefront import IntegerWavefrontContextModel
from imgcomp.io import load_image
from imgcomp.systems.mentzer2018.config import DOWNSAMPLING
from imgcomp.tensors import image_to_tensor, pad_to_multiple
from imgcomp.zoo import get_model

DEMO = Path(__file__).resolve().parents[3] / "assets" / "demo.png"  # src/imgcomp/assets
SKIMAGE = ["astronaut", "chelsea", "coffee", "rocket"]


def default_images(folders: list[str] | tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """demo.png, scikit-image photos and the PNG photos of ``folders`` (e.g. DATA/val-textured of
    ``imgcomp data prepare``)."""
    images = {"demo": load_image(DEMO)}
    try:
        import skimage.data

        for name in SKIMAGE:
            images[f"skimage-{name}"] = np.ascontiguousarray(getattr(skimage.data, name)()[..., :3])
    except ImportError:
        pass
    for folder in folders:
        for path in sorted(glob.glob(f"{folder}/*.png")):
            images[f"{Path(folder).name}/{Path(path).stem}"] = load_image(path)
    return images


@torch.no_grad()
def symbol_volume(codec, pixels: np.ndarray, quality: int) -> torch.Tensor:
    """The (K', h, w) symbols the codec codes for an image (no refinement), K' = active channels."""
    x = pad_to_multiple(image_to_tensor(pixels), DOWNSAMPLING).contiguous(memory_format=torch.channels_last)
    z, logits = codec.encode_unmasked(x, quality - 1)
    mask, _ = codec.importance(logits)
    symbols = codec.context_symbols(codec.quantizer.symbols(z * mask), mask)[0]
    return symbols[: _active_channels(symbols, codec.masked_out_symbol())].contiguous()


def code_both(loaded, params: IntegerContextParams, symbols: torch.Tensor, check_decode: bool = False) -> dict:
    """Ideal bits and real bytes of one symbol volume, float P vs integer P (tiles as the codec)."""
    codec = loaded.model
    result = {"float_bits": 0.0, "int_bits": 0.0}
    float_encoder, int_encoder = SymbolEncoder(), SymbolEncoder()
    tiles = latent_tiles(*symbols.shape[1:]) if symbols.shape[0] else []
    for top, left, th, tw in tiles:
        tile = symbols[:, top : top + th, left : left + tw].contiguous()
        shape = tuple(tile.shape)
        result["float_bits"] += WavefrontContextModel(codec.context_model, codec.symbol_inputs(), shape).encode(tile, float_encoder)
        result["int_bits"] += IntegerWavefrontContextModel(params, shape).encode(tile.numpy(), int_encoder)
    float_payload, int_payload = float_encoder.finish(), int_encoder.finish()
    result["float_bytes"], result["int_bytes"] = len(float_payload), len(int_payload)
    if check_decode:
        decoder = SymbolDecoder(int_payload)
        for top, left, th, tw in tiles:
            tile = symbols[:, top : top + th, left : left + tw].numpy()
            decoded = IntegerWavefrontContextModel(params, tile.shape).decode(decoder)
            assert np.array_equal(decoded, tile), "integer round trip failed"
    return result


def crop_volumes(codec, images, crop: int = 256) -> list[torch.Tensor]:
    """Symbol volumes of the centre crops of ``images`` ((H, W, 3) uint8) at every quality (the
    volumes with any active channel)."""
    volumes = []
    for pixels in images:
        h, w = pixels.shape[:2]
        top, left = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
        pixels = np.ascontiguousarray(pixels[top : top + crop, left : left + crop])
        for quality in range(1, codec.config.importance_heads + 1):
            volume = symbol_volume(codec, pixels, quality)
            if volume.shape[0]:
                volumes.append(volume)
    return volumes


def calibration_volumes(codec, data: str | None = None, limit: int = 12, crop: int = 256) -> list[torch.Tensor]:
    """Symbol volumes of the first ``limit`` photos of the folder ``data`` (centre crops) at every
    quality; scikit-image's photos without it."""
    paths = sorted(glob.glob(f"{data}/*.png"))[:limit] if data else []
    volumes = crop_volumes(codec, (load_image(path) for path in paths), crop)
    if not volumes:  # no training photos here: scikit-image's
        import skimage.data

        for name in SKIMAGE:
            for quality in range(1, codec.config.importance_heads + 1):
                volume = symbol_volume(codec, getattr(skimage.data, name)()[..., :3], quality)
                if volume.shape[0]:
                    volumes.append(volume)
    return volumes


def build(loaded, ranges_file: str | None = None, calibration_data: str | None = None, **bits) -> IntegerContextParams:
    """The integer P of a loaded model, calibrated on the photos of ``calibration_data``
    (:func:`calibration_volumes`; ranges cached in ``ranges_file``)."""
    import json

    codec = loaded.model
    if ranges_file and os.path.exists(ranges_file):
        with open(ranges_file) as f:
            ranges = json.load(f)
    else:
        ranges = activation_ranges(codec.context_model, calibration_inputs(codec, calibration_volumes(codec, calibration_data)))
        if ranges_file:
            with open(ranges_file, "w") as f:
                json.dump(ranges, f)
    return integer_context_from_float(codec.context_model, codec.symbol_inputs(), ranges=ranges, **bits)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("images", nargs="*")
    parser.add_argument("--model")
    parser.add_argument("--out", help="save the integer model here (.safetensors)")
    parser.add_argument("--weight-bits", type=int, default=12)
    parser.add_argument("--activation-bits", type=int, default=16)
    parser.add_argument("--input-bits", type=int, default=12)
    parser.add_argument("--qualities", default="1,2,3,4,5")
    parser.add_argument("--limit", type=int, default=0, help="at most this many images")
    parser.add_argument("--float32", action="store_true", help="per-layer weight widths that keep P exact in float32")
    parser.add_argument("--ranges", help="cache of the calibration's activation ranges (JSON)")
    parser.add_argument("--calibration-data", help="folder of training photos to calibrate on (default: scikit-image's)")
    parser.add_argument("--folder", action="append", default=[], help="also measure this folder's photos (repeatable)")
    args = parser.parse_args(argv)
    loaded = get_model(args.model)
    params = build(loaded, args.ranges, args.calibration_data, weight_bits=args.weight_bits, activation_bits=args.activation_bits,
                   input_bits=args.input_bits, float32=args.float32)
    if args.out:
        save(params, args.out)
    images = {Path(p).stem: load_image(p) for p in args.images} if args.images else default_images(args.folder)
    if args.limit:
        images = dict(list(images.items())[: args.limit])
    qualities = [int(q) for q in args.qualities.split(",")]
    totals = {q: {"float_bits": 0.0, "int_bits": 0.0, "float_bytes": 0, "int_bytes": 0, "pixels": 0} for q in qualities}
    print(f"bits: weights {params.meta['weight_bits']}, activations {args.activation_bits}, inputs {args.input_bits} "
          f"({params.meta['compute_dtype']}, bounds log2 {params.meta['bounds_log2']}); "
          f"{len(images)} images: {', '.join(images)}", flush=True)
    for name, pixels in images.items():
        for q in qualities:
            r = code_both(loaded, params, symbol_volume(loaded.model, pixels, q))
            for key in ("float_bits", "int_bits", "float_bytes", "int_bytes"):
                totals[q][key] += r[key]
            totals[q]["pixels"] += pixels.shape[0] * pixels.shape[1]
            print(f"{name:40s} q{q} ideal {r['float_bits']:10.0f} -> {r['int_bits']:10.0f} bits "
                  f"({100 * (r['int_bits'] / max(r['float_bits'], 1) - 1):+.3f}%), bytes {r['float_bytes']} -> {r['int_bytes']}",
                  flush=True)
    print("\nquality | float ideal bpp | int ideal bpp | ideal delta | float bytes | int bytes | bytes delta")
    for q, t in totals.items():
        print(f"{q} | {t['float_bits'] / t['pixels']:.4f} | {t['int_bits'] / t['pixels']:.4f} | "
              f"{100 * (t['int_bits'] / t['float_bits'] - 1):+.3f}% | {t['float_bytes']} | {t['int_bytes']} | "
              f"{100 * (t['int_bytes'] / t['float_bytes'] - 1):+.3f}%")




def bench(params: IntegerContextParams, repeats: int = 5, quality: int = 5) -> dict:
    """Median seconds to encode and decode demo.png's symbol volume (768x512: up to 32x64x96),
    float P vs integer P, on the calling thread's cores (setup excluded: schedules built once)."""
    loaded = get_model()
    codec = loaded.model
    symbols = symbol_volume(codec, load_image(DEMO), quality)
    shape = tuple(symbols.shape)
    float_model = WavefrontContextModel(codec.context_model, codec.symbol_inputs(), shape)
    int_model = IntegerWavefrontContextModel(params, shape)
    times = {"float_encode": [], "float_decode": [], "int_encode": [], "int_decode": []}
    for _ in range(repeats):
        for name, model, data in (("float", float_model, symbols), ("int", int_model, symbols.numpy())):
            encoder = SymbolEncoder()
            start = time.perf_counter()
            model.encode(data, encoder)
            times[f"{name}_encode"].append(time.perf_counter() - start)
            decoder = SymbolDecoder(encoder.finish())
            start = time.perf_counter()
            decoded = model.decode(decoder)
            times[f"{name}_decode"].append(time.perf_counter() - start)
            assert np.array_equal(np.asarray(decoded), symbols.numpy())
    return {"shape": shape, **{k: statistics.median(v) for k, v in times.items()},
            **{f"{k}_all": [round(x, 3) for x in v] for k, v in times.items()}}


def bench_main() -> None:
    from imgcomp.systems.mentzer2018.integer_context.model import load

    params = load(sys.argv[2]) if len(sys.argv) > 2 else build(get_model())
    print(bench(params, repeats=int(os.environ.get("BENCH_REPEATS", "5"))))


if __name__ == "__main__":
    bench_main() if sys.argv[1:2] == ["bench"] else main()
