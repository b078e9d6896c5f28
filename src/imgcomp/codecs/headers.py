"""Split a compressed file into header and payload, for payload-only bpp.

The papers count only the coded image data (plus a tiny header). Classical files carry markers,
boxes and tables; these parsers measure them from the bytes themselves:

* JPEG: everything up to and including the (last) SOS marker segment; payload is the
  entropy-coded scan data and EOI. Tables (DQT, DHT) count as header.
* JPEG 2000 (JP2 or raw codestream): everything except the tile-part bodies (the bytes between
  each SOD marker and the end of its tile-part).
* HEIF/AVIF (ISOBMFF): everything except the contents of the ``mdat`` boxes.
* WebP (lossy, ``VP8 `` chunk): everything except the VP8 partitions after the 10-byte frame
  header.

Each parser returns the header length in bytes and raises :class:`ImgcompError` on bytes it does
not understand.
"""

from __future__ import annotations

from imgcomp.errors import ImgcompError

_JPEG_SOI = 0xD8
_JPEG_SOS = 0xDA
_JPEG_EOI = 0xD9
_J2K_SOC = b"\xff\x4f"
_J2K_SOT = 0xFF90
_J2K_SOD = 0xFF93
_J2K_EOC = b"\xff\xd9"
_JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"


def _u16(data: bytes, pos: int, what: str) -> int:
    if pos + 2 > len(data):
        raise ImgcompError(f"{what}: truncated header")
    return int.from_bytes(data[pos : pos + 2], "big")


def _u32(data: bytes, pos: int, what: str) -> int:
    if pos + 4 > len(data):
        raise ImgcompError(f"{what}: truncated header")
    return int.from_bytes(data[pos : pos + 4], "big")


def jpeg_header_bytes(data: bytes) -> int:
    """Bytes up to and including the last SOS segment of a JPEG file (one per scan)."""
    if data[:2] != b"\xff\xd8":
        raise ImgcompError("JPEG: missing SOI marker")
    pos, header_end = 2, None
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise ImgcompError(f"JPEG: expected a marker at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == _JPEG_EOI:
            break
        length = _u16(data, pos + 2, "JPEG")
        pos += 2 + length
        if marker == _JPEG_SOS:
            header_end = pos
            pos = _next_jpeg_marker(data, pos)  # skip the entropy-coded scan
    if header_end is None:
        raise ImgcompError("JPEG: no SOS marker")
    return header_end


def _next_jpeg_marker(data: bytes, pos: int) -> int:
    while True:
        pos = data.find(b"\xff", pos)
        if pos < 0 or pos + 1 >= len(data):
            return len(data)
        follower = data[pos + 1]
        if follower == 0x00 or 0xD0 <= follower <= 0xD7:  # stuffed 0xFF or restart marker
            pos += 2
            continue
        return pos


def jpeg2000_header_bytes(data: bytes) -> int:
    """Bytes of a JP2 file or J2K codestream that are not tile-part bodies."""
    codestream_start = _jp2_codestream_offset(data) if data.startswith(_JP2_SIGNATURE) else 0
    codestream_end = len(data)
    cs = data
    if cs[codestream_start : codestream_start + 2] != _J2K_SOC:
        raise ImgcompError("JPEG 2000: missing SOC marker")
    pos = codestream_start + 2
    while _u16(cs, pos, "JPEG 2000") != _J2K_SOT:  # main header segments
        pos += 2 + _u16(cs, pos + 2, "JPEG 2000")
    payload = 0
    while pos + 2 <= codestream_end and _u16(cs, pos, "JPEG 2000") == _J2K_SOT:
        tile_part_start = pos
        tile_part_length = _u32(cs, pos + 6, "JPEG 2000")  # Psot; 0 means "up to EOC"
        pos += 2 + _u16(cs, pos + 2, "JPEG 2000")
        while _u16(cs, pos, "JPEG 2000") != _J2K_SOD:  # tile-part header segments
            pos += 2 + _u16(cs, pos + 2, "JPEG 2000")
        body_start = pos + 2
        if tile_part_length:
            tile_part_end = tile_part_start + tile_part_length
        else:
            tile_part_end = codestream_end - (2 if cs.endswith(_J2K_EOC) else 0)
        if tile_part_end < body_start or tile_part_end > codestream_end:
            raise ImgcompError("JPEG 2000: inconsistent tile-part length")
        payload += tile_part_end - body_start
        pos = tile_part_end
    return len(data) - payload


def _jp2_codestream_offset(data: bytes) -> int:
    for box_type, content_start, _ in iter_isobmff_boxes(data, "JP2"):
        if box_type == b"jp2c":
            return content_start
    raise ImgcompError("JP2: no codestream box")


def iter_isobmff_boxes(data: bytes, what: str):
    """Yield ``(type, content_start, content_end)`` for the top-level boxes of an ISOBMFF/JP2 file."""
    pos = 0
    while pos < len(data):
        size = _u32(data, pos, what)
        box_type = data[pos + 4 : pos + 8]
        header = 8
        if size == 1:
            size = int.from_bytes(data[pos + 8 : pos + 16], "big")
            header = 16
        elif size == 0:
            size = len(data) - pos
        if size < header or pos + size > len(data):
            raise ImgcompError(f"{what}: malformed box {box_type!r} at byte {pos}")
        yield box_type, pos + header, pos + size
        pos += size


def isobmff_header_bytes(data: bytes) -> int:
    """Bytes of a HEIF/AVIF file outside the contents of its ``mdat`` boxes."""
    payload = sum(
        end - start for box_type, start, end in iter_isobmff_boxes(data, "HEIF") if box_type == b"mdat"
    )
    if payload == 0:
        raise ImgcompError("HEIF: no mdat box")
    return len(data) - payload


def webp_header_bytes(data: bytes) -> int:
    """Bytes of a lossy WebP file outside the VP8 partitions (RIFF, chunk headers, frame header)."""
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise ImgcompError("WebP: missing RIFF/WEBP signature")
    pos, payload = 12, 0
    while pos + 8 <= len(data):
        chunk_type = data[pos : pos + 4]
        size = int.from_bytes(data[pos + 4 : pos + 8], "little")
        if pos + 8 + size > len(data):
            raise ImgcompError("WebP: truncated chunk")
        if chunk_type == b"VP8 ":
            payload += max(size - 10, 0)  # 3-byte frame tag, start code, 4 bytes of dimensions
        pos += 8 + size + (size & 1)
    if payload == 0:
        raise ImgcompError("WebP: no lossy VP8 chunk")
    return len(data) - payload
