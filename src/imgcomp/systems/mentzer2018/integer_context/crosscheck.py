"""Decode under other BLAS kernels and thread counts, in fresh processes (measurement and tests).

``python -m imgcomp.systems.mentzer2018.integer_context.crosscheck child MODE FOLDER`` decodes ``FOLDER/payload.bin``
(made by the parent under its own BLAS setting) with the ``int`` (``FOLDER/params.safetensors``)
or ``float`` (the default shipped model) path, re-encodes ``FOLDER/symbols.npy`` and prints one JSON
line: symbols equal, payload equal, SHA-256 of the re-encoded payload, and the BLAS kernel that
OpenBLAS reports. The ``int`` child imports no torch.

``python -m imgcomp.systems.mentzer2018.integer_context.crosscheck measure [--float]`` runs the whole matrix on the
demo image's latent (``OPENBLAS_CORETYPE`` in :data:`CORETYPES` x thread counts 1 and 2; encoder in
each setting, decoder in each other one) and prints how many pairs decode.

Whole files: ``tests/cross_file.py`` encodes and decodes real files with the API in fresh
processes, each under a BLAS kernel, thread count and ``ATEN_CPU_CAPABILITY`` of
:func:`file_environment`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

CORETYPES = ("Prescott", "Sandybridge", "Haswell", "SkylakeX")
THREADS = (1, 2)


def blas_environment(coretype: str | None, threads: int) -> dict[str, str]:
    env = dict(os.environ)
    for key in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[key] = str(threads)
    if coretype:
        env["OPENBLAS_CORETYPE"] = coretype
    else:
        env.pop("OPENBLAS_CORETYPE", None)
    return env


def _blas_kernel() -> str:
    try:
        from threadpoolctl import threadpool_info

        return ";".join(str(i.get("architecture")) for i in threadpool_info() if i.get("user_api") == "blas")
    except Exception as exc:  # pragma: no cover - informational only
        return f"unknown ({exc})"


def _coder(mode: str, shape):
    if mode == "int":
        from imgcomp.systems.mentzer2018.integer_context.model import load
        from imgcomp.systems.mentzer2018.integer_context.wavefront import IntegerWavefrontContextModel

        return IntegerWavefrontContextModel(load(_folder / "params.safetensors"), shape)
    from imgcomp.systems.mentzer2018.wavefront import WavefrontContextModel
    from imgcomp.zoo import get_model

    codec = get_model().model
    return WavefrontContextModel(codec.context_model, codec.symbol_inputs(), shape)


def _encode(mode: str, folder: Path, symbols):
    """Payload bytes of ``symbols`` with the chosen path (range coder as the codec's)."""
    import constriction

    global _folder
    _folder = folder
    coder = _coder(mode, symbols.shape)
    encoder = _Encoder(constriction)
    coder.encode(symbols if mode == "int" else __import__("torch").from_numpy(symbols), encoder)
    return encoder.finish()


class _Encoder:
    """The codec's SymbolEncoder, without importing imgcomp.entropy (which imports torch)."""

    def __init__(self, constriction):
        self.family = constriction.stream.model.Categorical(perfect=False)
        self.coder = constriction.stream.queue.RangeEncoder()

    def push(self, symbols, probabilities):
        import numpy as np

        self.coder.encode(np.asarray(symbols, np.int32), self.family, probabilities)

    def finish(self) -> bytes:
        return self.coder.get_compressed().astype("<u4").tobytes()


class _Decoder:
    def __init__(self, constriction, payload: bytes):
        import numpy as np

        self.family = constriction.stream.model.Categorical(perfect=False)
        self.coder = constriction.stream.queue.RangeDecoder(np.frombuffer(payload, "<u4").astype(np.uint32))

    def pull(self, probabilities):
        import numpy as np

        return np.asarray(self.coder.decode(self.family, probabilities), np.int64)


def child(mode: str, folder: Path) -> dict:
    import constriction
    import numpy as np

    global _folder
    _folder = folder
    symbols = np.load(folder / "symbols.npy")
    payload = (folder / "payload.bin").read_bytes()
    result = {"kernel": _blas_kernel()}
    try:
        decoded = _coder(mode, symbols.shape).decode(_Decoder(constriction, payload))
        decoded = np.asarray(decoded)
        result["symbols_equal"] = bool(np.array_equal(decoded, symbols))
        result["symbols_wrong"] = int((decoded != symbols).sum())
    except Exception as exc:
        result["symbols_equal"] = False
        result["error"] = f"{type(exc).__name__}: {exc}"[:200]
    again = _encode(mode, folder, symbols)
    result["payload_equal"] = again == payload
    result["payload_sha256"] = hashlib.sha256(again).hexdigest()
    result["torch_imported"] = "torch" in sys.modules
    return result


def run_child(mode: str, folder: Path, coretype: str | None, threads: int, timeout: float = 300) -> dict:
    src = str(Path(__file__).resolve().parents[4])  # the folder holding the imgcomp package
    env = blas_environment(coretype, threads)
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run(
        [sys.executable, "-m", "imgcomp.systems.mentzer2018.integer_context.crosscheck", "child", mode, str(folder)],
        env=env, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        return {"symbols_equal": False, "payload_equal": False, "error": out.stderr[-500:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(mode: str, root: Path, symbols) -> list[dict]:
    """Encode in each setting (in a child that writes its payload), decode in every other."""
    import numpy as np

    rows = []
    settings = list(itertools.product(CORETYPES, THREADS))
    for enc in settings:
        folder = root / f"{mode}-{enc[0]}-{enc[1]}"
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "symbols.npy", symbols)
        if mode == "int":
            (folder / "params.safetensors").write_bytes((root / "params.safetensors").read_bytes())
        (folder / "payload.bin").write_bytes(b"")
        made = run_child_encode(mode, folder, *enc)
        for dec in settings:
            if dec == enc:
                continue
            r = run_child(mode, folder, *dec)
            rows.append({"encoder": f"{enc[0]}/{enc[1]}", "decoder": f"{dec[0]}/{dec[1]}", **r, "encoder_kernel": made})
    return rows


def run_child_encode(mode: str, folder: Path, coretype: str, threads: int) -> str:
    src = str(Path(__file__).resolve().parents[4])  # the folder holding the imgcomp package
    env = blas_environment(coretype, threads)
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run(
        [sys.executable, "-m", "imgcomp.systems.mentzer2018.integer_context.crosscheck", "encode", mode, str(folder)],
        env=env, capture_output=True, text=True, timeout=300, check=True)
    return out.stdout.strip().splitlines()[-1]


ATEN_CAPABILITIES = ("default", "avx2")


def file_environment(coretype: str | None, threads: int, aten: str | None = None) -> dict[str, str]:
    """A child's environment: OpenBLAS kernel and threads (:func:`blas_environment`), torch's
    threads and its CPU kernels (``ATEN_CPU_CAPABILITY``: default, avx2, avx512)."""
    env = blas_environment(coretype, threads)
    env["IMGCOMP_TORCH_THREADS"] = str(threads)
    if aten:
        env["ATEN_CPU_CAPABILITY"] = aten
    else:
        env.pop("ATEN_CPU_CAPABILITY", None)
    return env


def main(argv: list[str]) -> None:
    import numpy as np

    command = argv[0]
    if command == "child":
        print(json.dumps(child(argv[1], Path(argv[2]))))
    elif command == "encode":
        folder = Path(argv[2])
        payload = _encode(argv[1], folder, np.load(folder / "symbols.npy"))
        (folder / "payload.bin").write_bytes(payload)
        print(_blas_kernel())
    elif command == "measure":
        import tempfile

        from imgcomp.systems.mentzer2018.integer_context.measure import DEMO, build, symbol_volume
        from imgcomp.systems.mentzer2018.integer_context.model import save
        from imgcomp.io import load_image
        from imgcomp.zoo import get_model

        quality = int(os.environ.get("CROSSCHECK_QUALITY", "5"))
        loaded = get_model()
        symbols = symbol_volume(loaded.model, load_image(DEMO), quality).numpy()
        modes = argv[1:] or ["int", "float"]
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            if "int" in modes:
                given = os.environ.get("CROSSCHECK_PARAMS")  # an integer P file, else built here
                if given:
                    (root / "params.safetensors").write_bytes(Path(given).read_bytes())
                else:
                    save(build(loaded, float32=True, activation_bits=10), root / "params.safetensors")
            for mode in modes:
                rows = measure(mode, root, symbols)
                ok = sum(r["symbols_equal"] for r in rows)
                same = sum(bool(r.get("payload_equal")) for r in rows)
                print(f"{mode}: latent {symbols.shape}, {len(rows)} cross pairs: {ok} decode exactly, "
                      f"{same} re-encode to identical bytes", flush=True)
                kernels = sorted({r.get("kernel", "?") for r in rows} | {r["encoder_kernel"] for r in rows})
                print(f"  kernels reported: {kernels}")
                for r in rows:
                    if not (r["symbols_equal"] and r.get("payload_equal")):
                        print(f"  FAIL {r['encoder']} -> {r['decoder']}: wrong symbols {r.get('symbols_wrong')} "
                              f"{r.get('error', '')[:80]}")
    else:
        raise SystemExit(f"unknown command {command}")


_folder = Path(".")

if __name__ == "__main__":
    main(sys.argv[1:])
