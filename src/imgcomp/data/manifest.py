"""``manifest.json``: where every file of a prepared data set came from.

One entry per output file: split, output path (relative to the data folder), source package
(name, version, kind), the original path inside the package, its licence and where that was read,
original and output size as ``[width, height]``, the processing recipe, and the SHA-256 of both the
original and the output file. The file is rewritten atomically and its content depends only on
its entries (no timestamps), so preparing twice gives byte-identical manifests.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from imgcomp.errors import ImgcompError
from imgcomp.io import write_atomic

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "imgcomp-data-manifest/1"


@dataclass(frozen=True)
class ManifestEntry:
    """Provenance of one output file."""

    split: str
    path: str
    package: str
    package_version: str
    package_kind: str
    original_path: str
    license: str
    license_source: str
    original_size: tuple[int, int]
    output_size: tuple[int, int]
    processing: str
    original_sha256: str
    sha256: str

    @classmethod
    def from_json(cls, data: dict) -> ManifestEntry:
        values = dict(data)
        values["original_size"] = tuple(values["original_size"])
        values["output_size"] = tuple(values["output_size"])
        return cls(**values)


@dataclass
class Manifest:
    """The whole manifest: recipes, packages used, and file entries keyed by output path."""

    processing: dict[str, str] = field(default_factory=dict)
    packages: dict[str, dict] = field(default_factory=dict)
    entries: dict[str, ManifestEntry] = field(default_factory=dict)

    def to_json(self) -> str:
        files = sorted(self.entries.values(), key=lambda entry: (entry.split, entry.path))
        document = {
            "format": MANIFEST_FORMAT,
            "sizes": "[width, height] in pixels",
            "processing": dict(sorted(self.processing.items())),
            "packages": dict(sorted(self.packages.items())),
            "files": [asdict(entry) for entry in files],
        }
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def read_manifest(folder: Path) -> Manifest | None:
    """The manifest in ``folder``; None if there is none. A damaged one raises ImgcompError."""
    path = folder / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        if document.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"unknown format {document.get('format')!r}")
        entries = [ManifestEntry.from_json(item) for item in document["files"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise ImgcompError(
            f"{path}: unreadable manifest ({exc}); delete it to rebuild the data set"
        ) from None
    return Manifest(
        processing=dict(document.get("processing", {})),
        packages=dict(document.get("packages", {})),
        entries={entry.path: entry for entry in entries},
    )


def write_manifest(folder: Path, manifest: Manifest) -> Path:
    """Write ``manifest.json`` into ``folder`` atomically."""
    path = folder / MANIFEST_NAME
    data = manifest.to_json().encode("utf-8")
    write_atomic(path, lambda handle: handle.write(data))
    return path
