"""What an ``.icz`` file holds, read from its header alone (``imgcomp info``).

:func:`describe` validates the file as decoding does (the same :class:`~imgcomp.errors.ImgcompError`
for anything malformed, the CRC included) and reports its container version, system, stream
version, model, quality, size, sections and bits per pixel. It decodes no pixels and imports no
torch: the model is matched by the SHA-256 of the shipped weights files, read as bytes.
"""

from __future__ import annotations

import zlib

from imgcomp import container
from imgcomp.errors import ImgcompError

# Which releases wrote each container version.
WRITTEN_BY = {2: "imgcomp 0.2", 3: "imgcomp 0.3-0.5", 4: "imgcomp after 0.5"}


def describe(data: bytes) -> dict:
    """A JSON-ready description of an ``.icz`` file's bytes; raises ImgcompError as decoding would."""
    from imgcomp.systems.base import SYSTEM_IDS, available_systems, get_system
    from imgcomp.zoo import shipped_name_by_tag

    data = bytes(data)
    header, sections = container.unpack(data)  # the decoder's checks: sizes, sections, CRC
    names = {number: name for name, number in SYSTEM_IDS.items()}
    system = names.get(header.system_id)
    if system is None:
        raise ImgcompError(f"unknown system id {header.system_id} in file")
    implemented = system in available_systems()
    readable = implemented and header.stream_version in get_system(system).readable_stream_versions
    model = shipped_name_by_tag(header.model_tag, header.system_id, header.stream_version)
    pixels = header.width * header.height
    listed = [
        {"kind": kind, "name": container.SECTION_NAMES[kind], "bytes": len(section)}
        for kind, section in sections.items()
    ]
    if header.lowpass_in_payload:
        listed[0]["name"] += " (the low-pass layer continues its stream)"
    metadata_section = sections.get(container.SECTION_METADATA, b"")
    payload = sum(len(section) for kind, section in sections.items() if kind != container.SECTION_METADATA)
    body = sum(len(section) for section in sections.values())
    checksum = int.from_bytes(data[len(data) - body - 4 : len(data) - body], "little")
    info = {
        "bytes": len(data),
        "format_version": header.version,
        "written_by": WRITTEN_BY[header.version],
        "system": system,
        "system_id": header.system_id,
        "system_implemented": implemented,
        "stream_version": header.stream_version,
        "stream_readable": readable,
        "model_tag": header.model_tag.hex(),
        "model": model if model is not None else "not installed",
        "quality": header.quality,
        "width": header.width,
        "height": header.height,
        "sections": listed,
        "header_bytes": len(data) - body,
        "bpp": 8 * len(data) / pixels,
        "payload_bpp": 8 * payload / pixels,
        "crc32": f"{checksum:08x}",
        "crc": "ok",  # container.unpack raised otherwise
    }
    if metadata_section:
        info["metadata"] = _metadata_summary(container.unpack_metadata(metadata_section))
    return info


def _metadata_summary(metadata: dict[str, bytes]) -> dict:
    summary: dict = {}
    if "icc_profile" in metadata:
        from imgcomp.io import icc_description

        summary["icc_profile_bytes"] = len(metadata["icc_profile"])
        summary["icc_profile"] = icc_description(metadata["icc_profile"]) or "unreadable"
    if "exif" in metadata:
        summary["exif_bytes"] = len(metadata["exif"])
        summary["exif_crc32"] = f"{zlib.crc32(metadata['exif']):08x}"
    return summary


def format_text(name: str, info: dict) -> str:
    """``imgcomp info``'s human-readable lines for one file."""
    sections = ", ".join(f"{section['name']} {section['bytes']}" for section in info["sections"])
    system = info["system"] + ("" if info["system_implemented"] else " (not implemented here)")
    stream = "" if info["stream_readable"] else " (not readable by this imgcomp)"
    lines = [
        f"{name}: {info['width']}x{info['height']}, {info['bytes']} bytes, {info['bpp']:.4f} bpp "
        f"(payload {info['payload_bpp']:.4f} bpp)",
        f"  container version {info['format_version']} ({info['written_by']}), CRC-32 {info['crc32']} {info['crc']}",
        f"  system {system} (id {info['system_id']}), stream version {info['stream_version']}{stream}",
        f"  model tag {info['model_tag']}: {info['model']}, quality {info['quality']}",
        f"  bytes: header {info['header_bytes']}, {sections}",
    ]
    metadata = info.get("metadata")
    if metadata:
        parts = []
        if "icc_profile" in metadata:
            parts.append(f"ICC profile {metadata['icc_profile']!r} ({metadata['icc_profile_bytes']} bytes)")
        if "exif_bytes" in metadata:
            parts.append(f"EXIF ({metadata['exif_bytes']} bytes)")
        lines.append("  metadata: " + ", ".join(parts))
    return "\n".join(lines)
