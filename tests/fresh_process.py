"""Decoding a file in a fresh interpreter, with ``imgcomp.decompress`` or the ``imgcomp decode``
command, and whether that imported torch (the torch-free decoders' tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SRC = str(Path(__file__).parents[1] / "src")

_DECOMPRESS = """
import sys
from pathlib import Path
import imgcomp
image = imgcomp.decompress(Path(sys.argv[1]).read_bytes())
print(image.size, "torch" in sys.modules)
"""

_CLI = (
    "import runpy, sys; sys.argv = ['imgcomp', 'decode', sys.argv[1], '-o', sys.argv[2], '--json'] + sys.argv[3:];"
    "import atexit; atexit.register(lambda: print('TORCH', 'torch' in sys.modules, file=sys.stderr));"
    "runpy.run_module('imgcomp', run_name='__main__')"
)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}


def decompress_output(path: Path) -> list[str]:
    """``imgcomp.decompress`` of the file: stdout words ``(W, H) <torch imported>``."""
    out = subprocess.run([sys.executable, "-c", _DECOMPRESS, str(path)], capture_output=True, text=True, env=_env(), check=True)
    return out.stdout.split()


def cli_decode(path: Path, target: Path, *options: str) -> subprocess.CompletedProcess:
    """``imgcomp decode path -o target --json *options``; stderr ends with ``TORCH <imported>``."""
    return subprocess.run([sys.executable, "-c", _CLI, str(path), str(target), *options], capture_output=True, text=True, env=_env())
