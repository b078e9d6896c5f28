"""The ``.icz`` container: a header of about 15 bytes, then the range-coded payload.

Layout (all integers unsigned; varints are LEB128, at most 4 bytes)::

    magic        2 bytes   b"\\xe9Z"
    version      4 bits    (high nibble)  FORMAT_VERSION
    quality      4 bits    (low nibble)   quality level - 1 (levels 1..16)
    model tag    2 bytes   first bytes of the SHA-256 of the model's weights file
    width - 1    varint
    height - 1   varint
    payload      varint    payload length in 32-bit words
    checksum     4 bytes   CRC-32 of every byte before it and of the payload
    payload      4 * n bytes

A 768x512 image at 0.1-1 bpp has a 15-byte header. Every field is validated before anything is
allocated; anything malformed raises :class:`ImgcompError` (a ``ValueError``).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from imgcomp.errors import ImgcompError

MAGIC = b"\xe9Z"
# The version also names the exact arithmetic that turns the context model into probabilities:
# version 1 ran it through torch, version 2 through numpy in schedule order (see
# imgcomp.entropy.wavefront). A file only decodes with the arithmetic it was encoded with.
# Version 3 appends the low-pass correction layer (imgcomp.lowpass) to the payload; version 2
# files, which lack it, still decode.
FORMAT_VERSION = 3
READABLE_VERSIONS = (2, 3)
MODEL_TAG_BYTES = 2
MAX_SIDE = 65536
MAX_PIXELS = 1 << 28  # 268 megapixels: larger claims are rejected before any work is done
MAX_VARINT_BYTES = 4


@dataclass(frozen=True)
class Header:
    width: int
    height: int
    quality: int
    model_tag: bytes
    version: int = FORMAT_VERSION


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(data: bytes, offset: int, what: str) -> tuple[int, int]:
    value = 0
    for i in range(MAX_VARINT_BYTES):
        if offset + i >= len(data):
            raise ImgcompError(f"truncated file (in the {what} field)")
        byte = data[offset + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, offset + i + 1
    raise ImgcompError(f"corrupt header: {what} field too long")


def model_tag(weights_sha256: str) -> bytes:
    return bytes.fromhex(weights_sha256)[:MODEL_TAG_BYTES]


def pack(header: Header, payload: bytes) -> bytes:
    """Serialise a header and payload into a complete file."""
    if not (1 <= header.width <= MAX_SIDE and 1 <= header.height <= MAX_SIDE):
        raise ImgcompError(f"image size {header.width}x{header.height} outside 1..{MAX_SIDE}")
    if header.width * header.height > MAX_PIXELS:
        raise ImgcompError(f"image of {header.width * header.height} pixels exceeds {MAX_PIXELS}")
    if not 1 <= header.quality <= 16:
        raise ImgcompError(f"quality {header.quality} outside 1..16")
    if len(payload) % 4:
        raise ImgcompError("payload must be whole 32-bit words")
    head = (
        MAGIC
        + bytes([(header.version << 4) | (header.quality - 1)])
        + header.model_tag[:MODEL_TAG_BYTES]
        + _varint(header.width - 1)
        + _varint(header.height - 1)
        + _varint(len(payload) // 4)
    )
    checksum = zlib.crc32(payload, zlib.crc32(head))
    return head + struct.pack("<I", checksum) + payload


def unpack(data: bytes) -> tuple[Header, bytes]:
    """Parse and verify a file; returns the header and the payload."""
    data = bytes(data)
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        raise ImgcompError("not an imgcomp file (wrong magic bytes)")
    if len(data) < len(MAGIC) + 1 + MODEL_TAG_BYTES:
        raise ImgcompError("truncated file (header incomplete)")
    offset = len(MAGIC)
    version, quality = data[offset] >> 4, (data[offset] & 0x0F) + 1
    if version not in READABLE_VERSIONS:
        older = " (written by an older imgcomp: decode it with that version)" if version < min(READABLE_VERSIONS) else ""
        raise ImgcompError(
            f"unsupported format version {version}{older}; this imgcomp reads versions "
            + " and ".join(map(str, READABLE_VERSIONS))
        )
    offset += 1
    tag = data[offset : offset + MODEL_TAG_BYTES]
    offset += MODEL_TAG_BYTES
    width, offset = _read_varint(data, offset, "width")
    height, offset = _read_varint(data, offset, "height")
    words, offset = _read_varint(data, offset, "payload length")
    width, height = width + 1, height + 1
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        raise ImgcompError(f"corrupt header: absurd image size {width}x{height}")
    if len(data) < offset + 4:
        raise ImgcompError("truncated file (checksum missing)")
    (checksum,) = struct.unpack("<I", data[offset : offset + 4])
    payload = data[offset + 4 :]
    if len(payload) != 4 * words:
        raise ImgcompError(
            f"truncated or padded file: payload is {len(payload)} bytes, header says {4 * words}"
        )
    if zlib.crc32(payload, zlib.crc32(data[:offset])) != checksum:
        raise ImgcompError("corrupt file: checksum mismatch")
    return Header(width, height, quality, tag, version), payload
