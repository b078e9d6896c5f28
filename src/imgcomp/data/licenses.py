"""Best-effort licence lookup for files shipped in Debian packages.

Debian documents licences in ``usr/share/doc/PKG/copyright``, usually in the machine-readable
DEP-5 format: paragraphs with a ``Files:`` list of glob patterns (relative to the *upstream source
tree*) and a ``License:`` short name; the last paragraph whose pattern matches a file applies.
Installed paths differ from upstream paths, so callers map an installed prefix to an upstream one
(e.g. ``usr/share/lxqt/wallpapers/`` -> ``wallpapers/``). A licence file shipped beside the images
(lxqt's ``wallpapers/License``) is more specific than the package-wide default and wins.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path

_CC_URL = re.compile(
    r"creativecommons\.org/(?:licenses/([a-z-]+)|publicdomain/zero)/(\d+\.\d+)", re.I
)


@dataclass(frozen=True)
class LicenseInfo:
    """A licence short name (SPDX-style where known) and where it was read from."""

    license: str
    source: str


@dataclass(frozen=True)
class _Paragraph:
    patterns: tuple[str, ...]
    license: str


def parse_dep5(text: str) -> list[_Paragraph] | None:
    """The ``Files``/``License`` paragraphs of a DEP-5 copyright file; None if not DEP-5."""
    if not re.match(r"\s*Format:", text):
        return None
    paragraphs = []
    for block in re.split(r"\n\s*\n", text):
        fields = _fields(block)
        if "files" in fields and "license" in fields:
            license_name = fields["license"].splitlines()[0].strip()
            paragraphs.append(_Paragraph(tuple(fields["files"].split()), license_name))
    return paragraphs


def _fields(block: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    current = None
    for line in block.splitlines():
        if line.startswith("#"):
            continue
        if line[:1] in (" ", "\t") and current is not None:
            fields[current] += "\n" + line.strip()
        elif ":" in line:
            key, value = line.split(":", 1)
            current = key.strip().lower()
            fields[current] = value.strip()
    return fields


def dep5_license(paragraphs: list[_Paragraph], upstream_path: str) -> str | None:
    """The licence of the last paragraph whose ``Files`` pattern matches ``upstream_path``."""
    found = None
    for paragraph in paragraphs:
        # DEP-5 globs: '*' matches any run of characters including '/', as fnmatch does.
        if any(fnmatch.fnmatchcase(upstream_path, pattern) for pattern in paragraph.patterns):
            found = paragraph.license
    return found


def license_from_notice(text: str) -> str:
    """A licence name from a free-form notice: Creative Commons URLs become SPDX ids."""
    match = _CC_URL.search(text)
    if match:
        kind, version = match.groups()
        return f"CC-{kind.upper()}-{version}" if kind else f"CC0-{version}"
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return first or "unknown"


def find_license(
    root: Path,
    package: str,
    installed_path: str,
    *,
    upstream_prefix: tuple[str, str] = ("", ""),
    license_file: str | None = None,
) -> LicenseInfo:
    """Licence of ``installed_path`` inside an extracted package rooted at ``root``."""
    if license_file is not None and (root / license_file).is_file():
        notice = (root / license_file).read_text(encoding="utf-8", errors="replace")
        return LicenseInfo(license_from_notice(notice), license_file)
    copyright_path = f"usr/share/doc/{package}/copyright"
    if not (root / copyright_path).is_file():
        return LicenseInfo("unknown", f"{copyright_path} missing")
    text = (root / copyright_path).read_text(encoding="utf-8", errors="replace")
    paragraphs = parse_dep5(text)
    if paragraphs is None:
        return LicenseInfo(f"see {copyright_path}", copyright_path)
    installed_prefix, source_prefix = upstream_prefix
    upstream = installed_path
    if installed_prefix and installed_path.startswith(installed_prefix):
        upstream = source_prefix + installed_path[len(installed_prefix) :]
    found = dep5_license(paragraphs, upstream)
    return LicenseInfo(found or "unknown", f"{copyright_path} (as {upstream})")
