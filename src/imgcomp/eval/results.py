"""The evaluation results file: one JSON document, rewritten atomically after every unit of work.

Layout::

    {
      "format": "imgcomp-eval-results", "version": 1,
      "config": {"images": {NAME: SHA256, ...},
                 "codecs": {NAME: {"label", "library", "setting_name", "parameters", "settings"}}},
      "image_dir": "/abs/path",
      "runs": [{"started", "seconds", "computed", "jobs", "cpu_count", "platform"}, ...],
      "records": [EvalRecord as a dict, ...]
    }

``config`` identifies the run: a file resumes only under the same config. Every record also
carries its image's sha256 and its codec library's version, so records from different files can
be merged (``imgcomp report a.json b.json``) without mixing stale results.
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from imgcomp.codecs import Setting
from imgcomp.errors import ImgcompError
from imgcomp.io import write_atomic

RESULTS_FORMAT = "imgcomp-eval-results"
RESULTS_VERSION = 1


@dataclass(frozen=True)
class EvalRecord:
    """One (image, codec, setting) measurement. Metrics are ``None`` where they cannot be computed
    (MS-SSIM on images under 161 px a side; PSNR of a lossless result) or were not asked for
    (LPIPS with ``--lpips none``, and in files of imgcomp 0.5 and before, which lack the fields)."""

    image: str
    image_sha256: str
    width: int
    height: int
    codec: str
    library: str
    setting: Setting
    bytes: int
    bpp: float
    payload_bytes: int | None
    payload_bpp: float | None
    psnr: float | None
    ms_ssim: float | None
    ms_ssim_ycbcr: float | None
    encode_seconds: float
    decode_seconds: float
    # LPIPS distance (lower is better) of the network named in lpips_net ("alex", "vgg": ST-LPIPS),
    # and the seconds it took (the metric's cost, not the codec's).
    lpips: float | None = None
    lpips_net: str | None = None
    lpips_seconds: float | None = None

    @property
    def key(self) -> tuple[str, str, float]:
        return record_key(self.image, self.codec, self.setting)

    def to_dict(self) -> dict[str, Any]:
        return {name: _json_number(value) for name, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalRecord:
        names = {f.name for f in fields(cls)}
        missing = names - set(data) - OPTIONAL_FIELDS
        if missing:
            raise ImgcompError(f"results record lacks {', '.join(sorted(missing))}")
        return cls(**{name: data[name] for name in names if name in data})


OPTIONAL_FIELDS = frozenset({"lpips", "lpips_net", "lpips_seconds"})
"""Record fields added after results format version 1 was fixed: absent in older files."""


def record_key(image: str, codec: str, setting: Setting) -> tuple[str, str, float]:
    """The identity of a record; settings compare as numbers (5 == 5.0)."""
    return (image, codec, float(setting))


def _json_number(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass
class ResultsFile:
    """An evaluation results file in memory."""

    config: dict[str, Any]
    image_dir: str = ""
    records: list[EvalRecord] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": RESULTS_FORMAT,
            "version": RESULTS_VERSION,
            "config": self.config,
            "image_dir": self.image_dir,
            "runs": self.runs,
            "records": [record.to_dict() for record in self.records],
        }

    def keys(self) -> set[tuple[str, str, float]]:
        return {record.key for record in self.records}


def load_results(path: str | os.PathLike) -> ResultsFile:
    """Read a results file; anything else raises :class:`ImgcompError` with the reason."""
    path = Path(path)
    if not path.is_file():
        raise ImgcompError(f"{path}: no such results file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ImgcompError(f"{path}: not a readable results JSON file ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != RESULTS_FORMAT:
        raise ImgcompError(f"{path}: not an imgcomp evaluation results file")
    if data.get("version") != RESULTS_VERSION:
        raise ImgcompError(f"{path}: results format version {data.get('version')!r} is not supported")
    try:
        config = data["config"]
        if not isinstance(config.get("images"), dict) or not isinstance(config.get("codecs"), dict):
            raise TypeError("config needs 'images' and 'codecs'")
        records = [EvalRecord.from_dict(item) for item in data["records"]]
        runs = list(data.get("runs", []))
    except (KeyError, TypeError, AttributeError) as exc:
        raise ImgcompError(f"{path}: malformed results file ({exc})") from None
    except ImgcompError as exc:
        raise ImgcompError(f"{path}: malformed results file ({exc})") from None
    return ResultsFile(config=config, image_dir=str(data.get("image_dir", "")), records=records, runs=runs)


def save_results(path: str | os.PathLike, results: ResultsFile) -> None:
    """Write the file atomically (temporary file + rename): an interrupted write leaves the old one."""
    text = json.dumps(results.to_dict(), indent=1, allow_nan=False)
    write_atomic(Path(path), lambda handle: handle.write(text.encode("utf-8")))


def group_records(records: list[EvalRecord]) -> dict[str, dict[str, list[EvalRecord]]]:
    """``{codec: {image: [records sorted by bpp]}}``."""
    grouped: dict[str, dict[str, list[EvalRecord]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        grouped[record.codec][record.image].append(record)
    return {
        codec: {image: sorted(items, key=lambda r: r.bpp) for image, items in by_image.items()}
        for codec, by_image in grouped.items()
    }
