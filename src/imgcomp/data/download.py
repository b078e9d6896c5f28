"""Checksummed downloads: fetch a URL to a file only if its SHA-256 is the one expected.

The payload is streamed into a temporary file beside the destination while it is hashed; only a
verified file is renamed into place, so an interrupted or corrupt download never leaves a file at
the destination. ``http://``, ``https://`` and ``file://`` URLs work (the last for local mirrors).
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from imgcomp.errors import ImgcompError
from imgcomp.io import file_sha256

CHUNK_BYTES = 1 << 20


def is_verified(path: str | os.PathLike, sha256: str) -> bool:
    """Whether ``path`` is a file whose SHA-256 is ``sha256``."""
    return Path(path).is_file() and file_sha256(path) == sha256.lower()


def download_verified(
    url: str,
    dest: str | os.PathLike,
    sha256: str,
    *,
    size: int | None = None,
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` to ``dest`` and check its SHA-256; skip if ``dest`` is already verified.

    ``size`` (bytes), when known, is checked too and caps how much is read, so a wrong URL cannot
    fill the disk. Network failures and checksum mismatches raise :class:`ImgcompError`; in both
    cases nothing is left at ``dest`` (an existing file there is only replaced by a verified one).
    """
    dest = Path(dest)
    expected = sha256.lower()
    if is_verified(dest, expected):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    try:
        digest, received = _fetch_to(url, tmp, timeout=timeout, limit=size)
        if size is not None and received != size:
            raise ImgcompError(
                f"{url}: expected {size} bytes, got {received}; the download is incomplete or the "
                "server has a different file"
            )
        if digest != expected:
            raise ImgcompError(
                f"{url}: checksum mismatch (expected sha256 {expected}, got {digest}); the server "
                "has a different or corrupt file, nothing was saved"
            )
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    return dest


def _fetch_to(url: str, tmp: Path, *, timeout: float, limit: int | None) -> tuple[str, int]:
    digest = hashlib.sha256()
    received = 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as handle:
            while chunk := response.read(CHUNK_BYTES):
                received += len(chunk)
                if limit is not None and received > limit:
                    raise ImgcompError(f"{url}: larger than the expected {limit} bytes; stopped")
                digest.update(chunk)
                handle.write(chunk)
    except urllib.error.HTTPError as exc:
        raise ImgcompError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise ImgcompError(
            f"cannot download {url}: {exc.reason}; check the network connection or use a mirror"
        ) from None
    except TimeoutError:
        raise ImgcompError(f"cannot download {url}: no answer within {timeout:g} s") from None
    except (ConnectionError, OSError) as exc:
        raise ImgcompError(f"cannot download {url}: {exc}") from None
    return digest.hexdigest(), received
