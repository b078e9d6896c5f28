"""The container's model tag of Rippel & Bourdev files, without torch: the weights file holds the
networks and the bit-context table, so its SHA-256 covers everything the coded bytes depend on."""

from __future__ import annotations

from imgcomp.errors import ImgcompError

STREAM_VERSIONS = (1,)


def model_tag(weights_sha256: str, folder, stream_version: int) -> bytes:
    """The first 2 bytes of the weights file's SHA-256."""
    if stream_version not in STREAM_VERSIONS:
        raise ImgcompError(f"rippel2017 stream version {stream_version} is not known to this imgcomp")
    return bytes.fromhex(weights_sha256)[:2]
