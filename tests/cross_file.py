"""Whole .icz files across machines' arithmetic: a child process that encodes or decodes under the
BLAS kernel, thread count and torch CPU capability of its environment
(:func:`imgcomp.systems.mentzer2018.integer_context.crosscheck.file_environment`).

``python tests/cross_file.py encode-file IMAGE OUT.icz QUALITY STREAM_VERSION`` writes a file with
the real API; ``python tests/cross_file.py decode-file FILE.icz`` prints the SHA-256 of its decoded
symbols, low-pass offsets and pixels (the pixels also to ``FILE.icz.npy``); one JSON line each.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _blas_kernel() -> str:
    from imgcomp.systems.mentzer2018.integer_context.crosscheck import _blas_kernel as kernel

    return kernel()


def encode_file(image: str, out: str, quality: int, stream_version: int) -> dict:
    import torch

    from imgcomp.api import encode_image

    torch.set_num_threads(int(os.environ.get("IMGCOMP_TORCH_THREADS", "1")))
    result = encode_image(image, quality, stream_version=stream_version)
    Path(out).write_bytes(result.data)
    return {"bytes": len(result.data), "sha256": hashlib.sha256(result.data).hexdigest(), "kernel": _blas_kernel(),
            "aten": torch.backends.cpu.get_cpu_capability()}


def decode_file(path: str) -> dict:
    """Decode a file step by step: SHA-256 of its symbols, low-pass offsets and pixels."""
    import numpy as np
    import torch

    from imgcomp import container
    from imgcomp.api import decode_image, read_file
    from imgcomp.entropy import SymbolDecoder
    from imgcomp.postfilter.lowpass import decode_offsets
    from imgcomp.systems.mentzer2018.stream import decode_symbols

    torch.set_num_threads(int(os.environ.get("IMGCOMP_TORCH_THREADS", "1")))
    data = Path(path).read_bytes()
    result = {"kernel": _blas_kernel(), "aten": torch.backends.cpu.get_cpu_capability()}
    try:
        header, sections, loaded = read_file(data)
        symbols = decode_symbols(loaded, SymbolDecoder(sections[container.SECTION_SYSTEM]), header.height, header.width,
                                 header.stream_version)
        result["stream_version"] = header.stream_version
        result["symbols_sha256"] = hashlib.sha256(symbols.numpy().tobytes()).hexdigest()
        if container.SECTION_LOWPASS in sections:
            offsets, settings = decode_offsets(SymbolDecoder(sections[container.SECTION_LOWPASS]), header.height, header.width,
                                               loaded.system.lowpass_version(header.stream_version))
            result["lowpass"] = [settings.block, settings.step] if settings else None
            result["offsets_sha256"] = hashlib.sha256(np.ascontiguousarray(offsets).tobytes()).hexdigest() if settings else None
        pixels = decode_image(data, engine="torch")
        np.save(path + ".npy", pixels)
        result["pixels_sha256"] = hashlib.sha256(pixels.tobytes()).hexdigest()
        if header.stream_version == 2:  # the torch-free decoder: the same symbols, its own pixels
            from imgcomp.api import _torch_free_model_for
            from imgcomp.systems.mentzer2018.symbols import integer_coder, pull_symbols

            light = _torch_free_model_for(header, None)
            numpy_symbols = pull_symbols(
                SymbolDecoder(sections[container.SECTION_SYSTEM]), light.config.latent_channels, header.height,
                header.width, light.masked_out_symbol(), lambda shape: integer_coder(light, shape))
            result["numpy_symbols_sha256"] = hashlib.sha256(numpy_symbols.tobytes()).hexdigest()
            numpy_pixels = decode_image(data, engine="numpy")
            np.save(path + ".numpy.npy", numpy_pixels)
            result["numpy_pixels_sha256"] = hashlib.sha256(numpy_pixels.tobytes()).hexdigest()
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"[:300]
    return result


def run_file_child(args: list[str], coretype: str | None, threads: int, aten: str | None = None, timeout: float = 300) -> dict:
    """``encode-file`` or ``decode-file`` in a fresh process under that setting; its JSON line."""
    from imgcomp.systems.mentzer2018.integer_context.crosscheck import file_environment

    env = file_environment(coretype, threads, aten)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run(
        [sys.executable, "-W", "ignore", __file__, *args],
        env=env, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        return {"error": out.stderr[-800:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    sys.path.insert(0, SRC)
    command, args = sys.argv[1], sys.argv[2:]
    if command == "encode-file":
        print(json.dumps(encode_file(args[0], args[1], int(args[2]), int(args[3]))))
    elif command == "decode-file":
        print(json.dumps(decode_file(args[0])))
    else:
        raise SystemExit(f"unknown command {command}")
