"""The ``.icz`` container: a self-describing header, then length-prefixed sections.

Format version 4 (all integers unsigned; varints are LEB128, at most 4 bytes)::

    magic           2 bytes   b"\\xe9Z"
    version         4 bits    (high nibble)  FORMAT_VERSION = 4
    quality         4 bits    (low nibble)   quality level - 1 (levels 1..16)
    system id       1 byte    which published system wrote the file (imgcomp.systems.base.SYSTEM_IDS)
    stream version  1 byte    version of that system's own payload format
    model tag       2 bytes   first bytes of the SHA-256 of the model's weights file
    width - 1       varint
    height - 1      varint
    sections        1 byte    how many sections follow (1..MAX_SECTIONS)
    per section     1 byte kind, varint length in bytes
    checksum        4 bytes   CRC-32 of every byte before it and of every section
    section bytes   in the order listed; together at least width x height / 2^12 bytes
                    (imgcomp.limits.min_payload_bytes: encoders pad the system payload)

Section kinds: ``SECTION_SYSTEM`` (0, required, first) is the system's payload;
``SECTION_LOWPASS`` (1, optional) is the low-pass correction layer
(:mod:`imgcomp.postfilter.lowpass`); ``SECTION_METADATA`` (2, optional) carries the input's ICC
profile and EXIF (:func:`pack_metadata`; never read to decode pixels). A file's arithmetic is named by its system id and stream
version, so one system's change never bumps the container's version.

Versions 2 and 3 (imgcomp 0.2-0.5, all Mentzer et al. 2018 with stream version 1) still read:
magic, version|quality, model tag, width - 1, height - 1, payload length in 32-bit words, CRC-32,
payload; version 3 continues the payload's range-coded stream with the low-pass layer.
:func:`unpack` returns them as one system section with ``Header.lowpass_in_payload`` set for v3.

Every field is validated before anything is allocated; anything malformed raises
:class:`ImgcompError` (a ``ValueError``).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from imgcomp.errors import ImgcompError
from imgcomp.limits import PIXELS_PER_BYTE, min_payload_bytes

MAGIC = b"\xe9Z"
FORMAT_VERSION = 4
READABLE_VERSIONS = (2, 3, 4)
LEGACY_SYSTEM_ID = 1  # versions 2 and 3 were all written by mentzer2018 ...
LEGACY_STREAM_VERSION = 1  # ... with its stream version 1 (numpy arithmetic in schedule order)
MODEL_TAG_BYTES = 2
MAX_SIDE = 65536
MAX_PIXELS = 1 << 28  # 268 megapixels: larger claims are rejected before any work is done
MAX_VARINT_BYTES = 4
SECTION_SYSTEM = 0
SECTION_LOWPASS = 1
SECTION_METADATA = 2
SECTION_NAMES = {SECTION_SYSTEM: "system payload", SECTION_LOWPASS: "low-pass layer", SECTION_METADATA: "metadata"}
# Entries of the metadata section: tag (1 byte), length (varint), bytes. Unknown tags are skipped.
METADATA_ICC = 1  # an ICC profile, as embedded in PNG/JPEG/WebP/TIFF
METADATA_EXIF = 2  # EXIF as a TIFF structure ("II*\0" or "MM\0*" ...), without JPEG's b"Exif\0\0"
METADATA_NAMES = {METADATA_ICC: "icc_profile", METADATA_EXIF: "exif"}
MAX_SECTIONS = 8


@dataclass(frozen=True)
class Header:
    width: int
    height: int
    quality: int
    model_tag: bytes
    system_id: int = LEGACY_SYSTEM_ID
    stream_version: int = LEGACY_STREAM_VERSION
    version: int = FORMAT_VERSION

    @property
    def lowpass_in_payload(self) -> bool:
        """Version 3: the low-pass layer continues the system payload's range-coded stream."""
        return self.version == 3


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


def _check_size(width: int, height: int, prefix: str = "image size") -> None:
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE) or width * height > MAX_PIXELS:
        raise ImgcompError(f"{prefix} {width}x{height} outside 1..{MAX_SIDE} a side or over {MAX_PIXELS} pixels")


def pack(header: Header, sections: dict[int, bytes]) -> bytes:
    """Serialise a header and its sections (kind -> bytes) into a complete version-4 file."""
    _check_size(header.width, header.height)
    if not 1 <= header.quality <= 16:
        raise ImgcompError(f"quality {header.quality} outside 1..16")
    if not (1 <= header.system_id <= 255 and 0 <= header.stream_version <= 255):
        raise ImgcompError("system id must be 1..255 and stream version 0..255")
    if header.version != FORMAT_VERSION:
        raise ImgcompError(f"this imgcomp writes format version {FORMAT_VERSION} only")
    if SECTION_SYSTEM not in sections or not set(sections) <= set(SECTION_NAMES):
        raise ImgcompError(f"sections must include the system payload and be among {sorted(SECTION_NAMES)}")
    kinds = sorted(sections)
    if sum(len(sections[kind]) for kind in kinds) < min_payload_bytes(header.width, header.height):
        raise ImgcompError(
            f"sections too small for a {header.width}x{header.height} image: at least "
            f"{min_payload_bytes(header.width, header.height)} bytes (pad the system payload)"
        )
    head = bytearray(MAGIC)
    head.append((FORMAT_VERSION << 4) | (header.quality - 1))
    head += bytes([header.system_id, header.stream_version])
    head += header.model_tag[:MODEL_TAG_BYTES]
    head += _varint(header.width - 1) + _varint(header.height - 1)
    head.append(len(kinds))
    for kind in kinds:
        if len(sections[kind]) >= 1 << (7 * MAX_VARINT_BYTES):
            raise ImgcompError(f"{SECTION_NAMES[kind]} too large for the container")
        head += bytes([kind]) + _varint(len(sections[kind]))
    checksum = zlib.crc32(bytes(head))
    for kind in kinds:
        checksum = zlib.crc32(sections[kind], checksum)
    return bytes(head) + struct.pack("<I", checksum) + b"".join(sections[kind] for kind in kinds)


def unpack(data: bytes) -> tuple[Header, dict[int, bytes]]:
    """Parse and verify a file of any readable version; returns the header and its sections."""
    data = bytes(data)
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        raise ImgcompError("not an imgcomp file (wrong magic bytes)")
    if len(data) < len(MAGIC) + 1:
        raise ImgcompError("truncated file (header incomplete)")
    version = data[len(MAGIC)] >> 4
    if version not in READABLE_VERSIONS:
        older = " (written by an older imgcomp: decode it with that version)" if version < min(READABLE_VERSIONS) else ""
        raise ImgcompError(
            f"unsupported format version {version}{older}; this imgcomp reads versions "
            + ", ".join(map(str, READABLE_VERSIONS))
        )
    return _unpack_v4(data) if version == 4 else _unpack_legacy(data, version)


def _unpack_v4(data: bytes) -> tuple[Header, dict[int, bytes]]:
    offset = len(MAGIC)
    quality = (data[offset] & 0x0F) + 1
    offset += 1
    if len(data) < offset + 2 + MODEL_TAG_BYTES:
        raise ImgcompError("truncated file (header incomplete)")
    system_id, stream_version = data[offset], data[offset + 1]
    offset += 2
    if system_id == 0:
        raise ImgcompError("corrupt header: system id 0")
    tag = data[offset : offset + MODEL_TAG_BYTES]
    offset += MODEL_TAG_BYTES
    width, offset = _read_varint(data, offset, "width")
    height, offset = _read_varint(data, offset, "height")
    width, height = width + 1, height + 1
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        raise ImgcompError(f"corrupt header: absurd image size {width}x{height}")
    if offset >= len(data):
        raise ImgcompError("truncated file (in the section count)")
    count = data[offset]
    offset += 1
    if not 1 <= count <= MAX_SECTIONS:
        raise ImgcompError(f"corrupt header: {count} sections")
    table: list[tuple[int, int]] = []
    for _ in range(count):
        if offset >= len(data):
            raise ImgcompError("truncated file (in the section table)")
        kind = data[offset]
        length, offset = _read_varint(data, offset + 1, "section length")
        if kind not in SECTION_NAMES:
            raise ImgcompError(f"unknown section kind {kind} (written by a newer imgcomp?)")
        if any(kind == seen for seen, _ in table):
            raise ImgcompError(f"corrupt header: section kind {kind} listed twice")
        table.append((kind, length))
    if table[0][0] != SECTION_SYSTEM:
        raise ImgcompError("corrupt header: the system payload must be the first section")
    if len(data) < offset + 4:
        raise ImgcompError("truncated file (checksum missing)")
    (checksum,) = struct.unpack("<I", data[offset : offset + 4])
    body = offset + 4
    total = sum(length for _, length in table)
    if total < min_payload_bytes(width, height):  # the work a file asks for is bounded by its size
        raise ImgcompError(
            f"corrupt file: {total} bytes of sections cannot describe a {width}x{height} image "
            f"(version 4 needs one byte per {PIXELS_PER_BYTE} pixels, {min_payload_bytes(width, height)} here)"
        )
    if len(data) - body != total:
        raise ImgcompError(f"truncated or padded file: sections hold {len(data) - body} bytes, header says {total}")
    if zlib.crc32(data[body:], zlib.crc32(data[:offset])) != checksum:
        raise ImgcompError("corrupt file: checksum mismatch")
    sections = {}
    for kind, length in table:
        sections[kind] = data[body : body + length]
        body += length
    return Header(width, height, quality, tag, system_id, stream_version, 4), sections


def _unpack_legacy(data: bytes, version: int) -> tuple[Header, dict[int, bytes]]:
    """Versions 2 and 3 (imgcomp 0.2-0.5)."""
    if len(data) < len(MAGIC) + 1 + MODEL_TAG_BYTES:
        raise ImgcompError("truncated file (header incomplete)")
    offset = len(MAGIC)
    quality = (data[offset] & 0x0F) + 1
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
    header = Header(width, height, quality, tag, LEGACY_SYSTEM_ID, LEGACY_STREAM_VERSION, version)
    return header, {SECTION_SYSTEM: payload}


def header_bytes(data: bytes) -> int:
    """Bytes of a file that are not section contents (the container's overhead)."""
    _, sections = unpack(data)
    return len(data) - sum(len(section) for section in sections.values())


def pack_metadata(metadata: dict[str, bytes]) -> bytes:
    """The metadata section's bytes from ``{"icc_profile": ..., "exif": ...}`` (either may be absent;
    EXIF with or without its b"Exif\\0\\0" prefix)."""
    out = bytearray()
    for tag, name in METADATA_NAMES.items():
        value = metadata.get(name)
        if not value:
            continue
        value = bytes(value)
        if tag == METADATA_EXIF and value.startswith(b"Exif\x00\x00"):
            value = value[6:]
        if len(value) >= 1 << (7 * MAX_VARINT_BYTES):
            raise ImgcompError(f"{name} too large for the container")
        out += bytes([tag]) + _varint(len(value)) + value
    return bytes(out)


def unpack_metadata(section: bytes) -> dict[str, bytes]:
    """Inverse of :func:`pack_metadata` (EXIF returned as a TIFF structure, without a prefix)."""
    metadata: dict[str, bytes] = {}
    offset = 0
    while offset < len(section):
        tag = section[offset]
        length, offset = _read_varint(section, offset + 1, "metadata entry length")
        if offset + length > len(section):
            raise ImgcompError("corrupt file: metadata entry runs past its section")
        if tag in METADATA_NAMES:
            metadata[METADATA_NAMES[tag]] = section[offset : offset + length]
        offset += length
    return metadata
