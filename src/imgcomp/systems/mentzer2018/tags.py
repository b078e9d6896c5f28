"""What names a Mentzer et al. model in a file, without torch: the stream versions, the integer
context model's file beside the weights and the container's model tag (``imgcomp info`` and the
tag lookup need these before, or instead of, loading any network)."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from imgcomp.errors import ImgcompError

FLOAT_STREAM_VERSION = 1  # P in float arithmetic: machine-dependent bytes
EXACT_STREAM_VERSION = 2  # P in exact integer arithmetic (context-int.safetensors)
CONTEXT_FILE = "context-int.safetensors"  # the integer P beside a model's weights


@lru_cache(maxsize=16)
def _folder_params_sha256(path: str, mtime_ns: int) -> str:
    from imgcomp.systems.mentzer2018.integer_context import load, params_sha256

    return params_sha256(load(path))


def context_file(folder) -> Path | None:
    """The integer P file of a model folder, or None if it has none."""
    if folder is None:
        return None
    path = Path(folder) / CONTEXT_FILE
    return path if path.is_file() else None


def model_tag(weights_sha256: str, folder, stream_version: int) -> bytes:
    """The container's 2-byte model tag of files of ``stream_version``.

    Version 1: the first 2 bytes of the weights file's SHA-256 (as imgcomp 0.2-0.5). Version 2:
    the first 2 bytes of ``SHA-256(weights SHA-256 || params SHA-256)`` (the 32-byte digests, the
    second :func:`~.integer_context.params_sha256`, a canonical hash of the integer P's arrays),
    because the coded bytes depend on both files."""
    weights = bytes.fromhex(weights_sha256)
    if stream_version == FLOAT_STREAM_VERSION:
        return weights[:2]
    if stream_version != EXACT_STREAM_VERSION:
        raise ImgcompError(f"mentzer2018 stream version {stream_version} is not known to this imgcomp")
    path = context_file(folder)
    if path is None:
        raise ImgcompError(f"model folder {folder} has no {CONTEXT_FILE}: it codes stream version 1 only")
    params = bytes.fromhex(_folder_params_sha256(str(path.resolve()), path.stat().st_mtime_ns))
    return hashlib.sha256(weights + params).digest()[:2]
