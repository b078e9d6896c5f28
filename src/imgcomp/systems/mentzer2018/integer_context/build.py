"""Build a model's integer-exact P file, ``context-int.safetensors``, reproducibly (imports torch).

``python -m imgcomp.systems.mentzer2018.integer_context.build [--model M] [--ranges RANGES.json] [--calibration-data DIR] [--out FILE]``

The shipping bit widths (:data:`~.convert.DEFAULT_BITS`: 12-bit symbol inputs, 9-bit activations,
per-layer weights up to 12 bits that keep every sum exact in float32) and activation ranges from
``--ranges`` (JSON written by an earlier run; committed for the shipped models in
``docs/results/integer-context/calibration-ranges-<model>.json``). Without the ranges file they
are measured on 12 centre crops of the ``--calibration-data`` photos (or scikit-image's) at every quality
and written to it. ``--out`` defaults to the model folder's ``context-int.safetensors``. The same
model, ranges and bits give the same ``params_sha256`` on every machine (printed).

:func:`build_for_folder` is what training's export calls (ranges from the given symbol volumes).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from imgcomp.systems.mentzer2018.integer_context.model import params_sha256, save

CONTEXT_FILE = "context-int.safetensors"


def build_params(loaded, ranges_file: str | None = None, calibration_data: str | None = None):
    """The integer P of a loaded model with the shipping bit widths."""
    from imgcomp.systems.mentzer2018.integer_context.convert import DEFAULT_BITS
    from imgcomp.systems.mentzer2018.integer_context.measure import build

    return build(loaded, ranges_file, calibration_data, **DEFAULT_BITS)


def build_for_folder(folder: str | Path, images: list, crop: int = 256) -> Path:
    """Write ``folder/context-int.safetensors`` for the exported model in ``folder``, its activation
    ranges measured on centre crops of ``images`` ((H, W, 3) uint8 arrays) at every quality: what
    a training export calls, so a trained model writes exact (stream version 2) files at once.
    Written atomically; the ranges go into the file's metadata."""
    from imgcomp.io import write_atomic
    from imgcomp.models.export import load_model
    from imgcomp.systems.mentzer2018.integer_context.convert import DEFAULT_BITS, activation_ranges, calibration_inputs, integer_context_from_float
    from imgcomp.systems.mentzer2018.integer_context.measure import crop_volumes

    loaded = load_model(folder)
    codec = loaded.model
    volumes = crop_volumes(codec, images, crop)
    if not volumes:
        raise ValueError("no calibration symbols: every image masked out at every quality")
    ranges = activation_ranges(codec.context_model, calibration_inputs(codec, volumes))
    params = integer_context_from_float(codec.context_model, codec.symbol_inputs(), ranges=ranges, **DEFAULT_BITS)
    params.meta["weights_sha256"] = loaded.weights_sha256
    params.meta["calibration_ranges"] = ranges
    out = Path(folder) / CONTEXT_FILE
    tmp = out.with_name(f".{CONTEXT_FILE}.tmp")
    save(params, tmp)
    data = tmp.read_bytes()
    tmp.unlink()
    write_atomic(out, lambda handle: handle.write(data), overwrite=True)
    return out


CALIBRATION_IMAGES = 6  # training photos whose centre crops calibrate an export's integer P


def build_for_training_data(folder: str | Path, data: str | Path | None) -> Path | None:
    """:func:`build_for_folder` calibrated on the first :data:`CALIBRATION_IMAGES` photos of a
    training folder: what a training export (CPU trainer or GPU job) calls. When P cannot be
    calibrated (e.g. every crop masked out early in training) it warns, removes any older file so
    none is left stale beside new weights, and returns None: the export then writes stream
    version 1 files."""
    import warnings

    from imgcomp.data.folder import list_images
    from imgcomp.io import load_image

    paths = list_images(data)[:CALIBRATION_IMAGES] if data else []
    try:
        return build_for_folder(folder, [load_image(path) for path in paths])
    except ValueError as exc:
        (Path(folder) / CONTEXT_FILE).unlink(missing_ok=True)
        warnings.warn(f"no integer context model for this export ({exc})", stacklevel=2)
        return None


def main(argv: list[str] | None = None) -> None:
    from imgcomp.zoo import get_model

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="shipped model name or model folder (default: the default model)")
    parser.add_argument("--ranges", help="activation ranges (JSON): read if it exists, else measured and written")
    parser.add_argument("--calibration-data", help="folder of training photos to measure the ranges on (default: scikit-image's)")
    parser.add_argument("--out", help=f"output file (default: the model folder's {CONTEXT_FILE})")
    args = parser.parse_args(argv)
    loaded = get_model(args.model)
    params = build_params(loaded, args.ranges, args.calibration_data)
    params.meta["weights_sha256"] = loaded.weights_sha256  # informational: the loader warns if stale
    out = Path(args.out) if args.out else Path(loaded.path) / CONTEXT_FILE
    save(params, out)
    print(json.dumps({"out": str(out), "params_sha256": params_sha256(params), "weight_bits": params.meta["weight_bits"],
                      "bounds_log2": params.meta["bounds_log2"], "compute_dtype": params.meta["compute_dtype"]}))


if __name__ == "__main__":
    main()
