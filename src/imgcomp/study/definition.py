"""Reading a study folder: ``study.json`` (checked) and the paths of its images by id.

The web app and the analysis read a study only through :func:`load_study`; an image is found by
its opaque id, checked against the definition, never by a path a client sent.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgcomp.errors import ImgcompError

DEFINITION_VERSION = 1
DEFINITION_NAME = "study.json"
IMAGES_DIR = "images"
DEFAULT_DB_NAME = "votes.sqlite"
ID_PATTERN = re.compile(r"^[0-9a-f]{16}$")
_KEYS = ("version", "rates", "tolerance", "codecs", "images", "reconstructions", "comparisons",
         "attention", "session")


@dataclass
class Study:
    """A loaded study: its folder, definition and the SHA-256 of the definition file."""

    folder: Path
    definition: dict[str, Any]
    sha256: str
    comparisons: dict[str, dict[str, Any]] = field(default_factory=dict)
    servable: frozenset[str] = frozenset()

    @property
    def title(self) -> str:
        return str(self.definition.get("title") or "Which image is closer to the original?")

    def image_path(self, image_id: str) -> Path | None:
        """The PNG of an image id the study serves, or None for anything else."""
        if not isinstance(image_id, str) or not ID_PATTERN.match(image_id) or image_id not in self.servable:
            return None
        return self.folder / IMAGES_DIR / f"{image_id}.png"

    def default_db_url(self) -> str:
        """``sqlite:///STUDY/votes.sqlite``."""
        return f"sqlite:///{(self.folder / DEFAULT_DB_NAME).resolve()}"


def load_study(folder: str | Path) -> Study:
    """Read and check ``folder/study.json``; raise :class:`ImgcompError` if it is not a study."""
    folder = Path(folder)
    path = folder / DEFINITION_NAME
    if not path.is_file():
        raise ImgcompError(f"{folder}: not a study folder (no {DEFINITION_NAME}; make one with 'imgcomp study create')")
    raw = path.read_bytes()
    try:
        definition = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ImgcompError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(definition, dict) or any(key not in definition for key in _KEYS):
        raise ImgcompError(f"{path}: not a study definition (missing fields)")
    if definition["version"] != DEFINITION_VERSION:
        raise ImgcompError(f"{path}: study definition version {definition['version']!r}; this imgcomp reads {DEFINITION_VERSION}")
    ids = set(definition["images"]) | set(definition["reconstructions"])
    for check in definition["attention"]:
        ids |= {check["original"], check["degraded"]}
    for image_id in ids:
        if not ID_PATTERN.match(image_id):
            raise ImgcompError(f"{path}: malformed image id {image_id!r}")
        if not (folder / IMAGES_DIR / f"{image_id}.png").is_file():
            raise ImgcompError(f"{path}: image {image_id} is missing from {folder / IMAGES_DIR}")
    comparisons = {c["id"]: c for c in definition["comparisons"]}
    for c in comparisons.values():
        if c["a"] not in definition["reconstructions"] or c["b"] not in definition["reconstructions"]:
            raise ImgcompError(f"{path}: comparison {c['id']} names an unknown reconstruction")
    return Study(folder.resolve(), definition, hashlib.sha256(raw).hexdigest(), comparisons, frozenset(ids))
