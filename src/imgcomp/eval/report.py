"""Turn evaluation results into the papers' summaries: average RD curves, BD-rates, file size at
fixed MS-SSIM, timings; written as ``report.md``, ``report.json`` and PNG/SVG plots.

* Average curves: Mentzer et al. (2018, sec. 4), after Rippel & Bourdev (2017, sec. 5) - see
  :mod:`imgcomp.eval.curves`.
* BD-rate per image, averaged (pchip; :mod:`imgcomp.eval.bdrate`), in MS-SSIM dB
  (``-10 log10(1 - MS-SSIM)``), PSNR, YCbCr MS-SSIM dB and, where the results have it, LPIPS
  (lower is better, so BD-rate runs on ``1 - LPIPS``, which rises with rate as Bjontegaard's method
  needs; the equal-quality pairs are those of LPIPS itself).
* File size relative to the reference at fixed MS-SSIM: Rippel & Bourdev (2017), Table 1
  (:mod:`imgcomp.eval.size_at_quality`).
* Encode/decode time: median seconds per image over all images and settings.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from imgcomp.errors import ImgcompError
from imgcomp.eval.bdrate import BDRate, bd_rates
from imgcomp.eval.curves import AverageCurve, average_curve, bpp_grid, rd_curve
from imgcomp.eval.results import EvalRecord, group_records, load_results
from imgcomp.eval.size_at_quality import (
    DEFAULT_LEVELS,
    OperatingPoint,
    RelativeSize,
    operating_points,
    relative_sizes,
)
from imgcomp.io import check_writable, write_atomic
from imgcomp.metrics import ms_ssim_db

REPORT_FILES = (
    "report.md",
    "report.json",
    "rd_ms_ssim.png",
    "rd_ms_ssim.svg",
    "rd_psnr.png",
    "rd_psnr.svg",
)


def _db_or_none(value: float | None) -> float | None:
    return None if value is None else ms_ssim_db(value)


QUALITY_METRICS: dict[str, tuple[str, Callable[[EvalRecord], float | None]]] = {
    "ms_ssim_db": ("MS-SSIM (dB)", lambda r: _db_or_none(r.ms_ssim)),
    "psnr": ("PSNR (dB)", lambda r: r.psnr),
    "ms_ssim_ycbcr_db": ("MS-SSIM YCbCr (dB)", lambda r: _db_or_none(r.ms_ssim_ycbcr)),
    "lpips": ("LPIPS (as 1 - LPIPS)", lambda r: None if r.lpips is None else 1.0 - r.lpips),
}
"""Metrics BD-rates are computed in: name -> (label, value of a record); each must rise with quality."""

CURVE_METRICS: dict[str, tuple[str, Callable[[EvalRecord], float | None]]] = {
    "ms_ssim": ("MS-SSIM", lambda r: r.ms_ssim),
    "psnr": ("PSNR (dB)", lambda r: r.psnr),
    "ms_ssim_ycbcr": ("MS-SSIM YCbCr", lambda r: r.ms_ssim_ycbcr),
    "lpips": ("LPIPS", lambda r: r.lpips),
}
"""Metrics averaged along bpp (the papers average raw MS-SSIM, then plot it on any scale)."""

LPIPS_FILES = ("rd_lpips.png", "rd_lpips.svg")
"""Written besides :data:`REPORT_FILES` when the results have LPIPS."""

FEW_SETTINGS = 5
"""Codecs with at most this many settings (learned models) also get per-setting operating points."""


@dataclass
class MergedResults:
    """Records from one or more results files, checked to be consistent."""

    records: list[EvalRecord]
    codecs: dict[str, dict[str, Any]]
    images: dict[str, str]
    sources: list[str]
    runs: list[dict[str, Any]]


def merge_results(paths: Sequence[str | os.PathLike], tags: Mapping[str, str] | None = None) -> MergedResults:
    """Load results files; each codec may come from one file only, and an image name must mean
    the same file (sha256) everywhere. ``tags`` (results path -> tag) renames that file's codecs
    to ``NAME@TAG``, so two runs of one codec (two models, say) can be compared."""
    if not paths:
        raise ImgcompError("no results files given")
    tags = dict(tags or {})
    unknown = set(tags) - {str(path) for path in paths}
    if unknown:
        raise ImgcompError(f"--tag names a file that is not among the results: {', '.join(sorted(unknown))}")
    merged = MergedResults([], {}, {}, [], [])
    codec_source: dict[str, str] = {}
    for path in paths:
        results = load_results(path)
        tag = tags.get(str(path))
        merged.sources.append(str(path))
        merged.runs.extend({**run, "file": str(path)} for run in results.runs)
        for name, sha in results.config["images"].items():
            if merged.images.setdefault(name, sha) != sha:
                raise ImgcompError(f"image {name!r} differs between results files (sha256 mismatch)")
        for name, description in results.config["codecs"].items():
            if tag is not None:
                name = f"{name}@{tag}"
                description = {**description, "label": f"{description.get('label', name)} [{tag}]"}
            if name in codec_source:
                raise ImgcompError(
                    f"codec {name!r} is in both {codec_source[name]} and {path} (tell them apart with --tag FILE=TAG)"
                )
            codec_source[name] = str(path)
            merged.codecs[name] = description
        if tag is None:
            merged.records.extend(results.records)
        else:
            merged.records.extend(replace(record, codec=f"{record.codec}@{tag}") for record in results.records)
    if not merged.records:
        raise ImgcompError(f"no results recorded in {', '.join(merged.sources)}")
    return merged


@dataclass
class Report:
    """All numbers of a report; :meth:`to_dict` is ``report.json``, :meth:`to_markdown` is
    ``report.md``."""

    reference: str
    codecs: list[str]
    labels: dict[str, str]
    images: list[str]
    descriptions: dict[str, dict[str, Any]]
    curves: dict[str, dict[str, AverageCurve]]
    bd_rates: dict[str, dict[str, BDRate]]
    payload_bd_rates: dict[str, BDRate]
    sizes: dict[str, dict[str, list[RelativeSize]]]
    timing: dict[str, dict[str, Any]]
    sources: list[str]
    runs: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)
    operating_points: dict[str, list[OperatingPoint]] = field(default_factory=dict)
    lpips_net: str | None = None  # the LPIPS network of the LPIPS column (None: no LPIPS in the results)

    @property
    def has_lpips(self) -> bool:
        return self.lpips_net is not None

    def label(self, codec: str) -> str:
        return self.labels.get(codec, codec)

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "codecs": {
                name: {**self.descriptions.get(name, {}), "label": self.label(name)} for name in self.codecs
            },
            "images": self.images,
            "sources": self.sources,
            "runs": self.runs,
            "bd_rate": {
                metric: {codec: result.to_dict() for codec, result in by_codec.items()}
                for metric, by_codec in self.bd_rates.items()
            },
            "bd_rate_payload_ms_ssim_db": {codec: r.to_dict() for codec, r in self.payload_bd_rates.items()},
            "size_at_quality": {
                metric: {codec: [cell.to_dict() for cell in cells] for codec, cells in by_codec.items()}
                for metric, by_codec in self.sizes.items()
            },
            "operating_points_ms_ssim_db": {
                codec: [row.to_dict() for row in rows] for codec, rows in self.operating_points.items()
            },
            "timing": self.timing,
            "average_curves": {
                metric: {codec: curve.to_dict() for codec, curve in by_codec.items()}
                for metric, by_codec in self.curves.items()
            },
            "lpips": None if self.lpips_net is None else {
                "net": self.lpips_net, "variant": "shift_tolerant",
                "bd_rate_quality": "1 - LPIPS (LPIPS: lower is better)",
            },
            "notes": self.notes,
        }

    def to_markdown(self) -> str:
        return _markdown(self)


def build_report(
    merged: MergedResults,
    reference: str = "jpeg420",
    *,
    levels: Sequence[float] = DEFAULT_LEVELS,
    min_coverage: float = 0.5,
    grid_points: int = 120,
) -> Report:
    """Compute every summary of ``merged`` against the ``reference`` codec."""
    grouped = group_records(merged.records)
    if reference not in grouped:
        raise ImgcompError(
            f"reference codec {reference!r} has no results; codecs present: {', '.join(sorted(grouped))}"
        )
    images = sorted({record.image for record in merged.records})
    notes: list[str] = []
    nets = sorted({r.lpips_net or "?" for r in merged.records if r.lpips is not None})
    lpips_net = nets[0] if len(nets) == 1 else None
    if len(nets) > 1:
        notes.append(f"LPIPS left out: the results mix LPIPS networks ({', '.join(nets)})")
    if lpips_net is None and nets:
        merged = replace(merged, records=[replace(r, lpips=None, lpips_net=None) for r in merged.records])
        grouped = group_records(merged.records)

    curves: dict[str, dict[str, AverageCurve]] = {}
    for metric, (_, value_of) in CURVE_METRICS.items():
        if metric == "lpips" and lpips_net is None:
            continue
        per_codec = {
            codec: [rd_curve([r.bpp for r in rs], [value_of(r) for r in rs]) for rs in by_image.values()]
            for codec, by_image in grouped.items()
        }
        per_codec = {codec: [c for c in cs if len(c)] for codec, cs in per_codec.items()}
        non_empty = [c for cs in per_codec.values() for c in cs]
        if not non_empty:
            notes.append(f"no {metric} values recorded: no average curve")
            continue
        grid = bpp_grid(non_empty, grid_points)
        curves[metric] = {codec: average_curve(cs, grid, min_coverage) for codec, cs in per_codec.items()}

    def points(codec: str, value_of, rate_of=lambda r: r.bpp):
        return {
            image: ([rate_of(r) for r in rs], [value_of(r) for r in rs])
            for image, rs in grouped[codec].items()
            if all(rate_of(r) is not None for r in rs)
        }

    tested = [codec for codec in sorted(grouped) if codec != reference]
    bd: dict[str, dict[str, BDRate]] = {}
    without_lpips = sorted(c for c, by_image in grouped.items() if all(r.lpips is None for rs in by_image.values() for r in rs))
    for metric, (_, value_of) in QUALITY_METRICS.items():
        if metric == "lpips" and lpips_net is None:
            continue
        anchor = points(reference, value_of)
        bd[metric] = {codec: bd_rates(anchor, points(codec, value_of), codec, metric) for codec in tested}
        if metric == "lpips":  # one note for a codec measured without LPIPS, not one per image
            for codec in without_lpips:
                if codec in bd[metric]:
                    bd[metric][codec] = BDRate(codec=codec, metric=metric, mean=None)
            if without_lpips:
                notes.append(f"no LPIPS recorded for: {', '.join(without_lpips)}")
    payload_anchor = points(reference, QUALITY_METRICS["ms_ssim_db"][1], lambda r: r.payload_bpp)
    payload_bd = {}
    if payload_anchor:
        for codec in tested:
            test = points(codec, QUALITY_METRICS["ms_ssim_db"][1], lambda r: r.payload_bpp)
            if test:
                payload_bd[codec] = bd_rates(payload_anchor, test, codec, "ms_ssim_db (payload bpp)")

    min_images = max(1, math.ceil(min_coverage * len(grouped[reference])))
    sizes = {}
    for metric in ("ms_ssim", "ms_ssim_ycbcr"):
        value_of = CURVE_METRICS[metric][1]
        ref_points = points(reference, value_of, lambda r: r.bytes)
        sizes[metric] = {
            codec: relative_sizes(ref_points, points(codec, value_of, lambda r: r.bytes), levels, min_images)
            for codec in sorted(grouped)
        }

    ms_ssim_db_of = QUALITY_METRICS["ms_ssim_db"][1]
    reference_sizes = points(reference, ms_ssim_db_of, lambda r: r.bytes)
    operating = {}
    for codec in tested:
        if len({r.setting for rs in grouped[codec].values() for r in rs}) <= FEW_SETTINGS:
            per_image = {
                image: {r.setting: (r.bytes, r.bpp, ms_ssim_db_of(r)) for r in rs}
                for image, rs in grouped[codec].items()
            }
            operating[codec] = operating_points(reference_sizes, per_image)

    timing = {codec: _timing(by_image) for codec, by_image in grouped.items()}
    order = sorted(
        grouped,
        key=lambda c: (0.0 if c == reference else _sort_value(bd["ms_ssim_db"][c].mean), c),
    )
    labels = {name: merged.codecs.get(name, {}).get("label", name) for name in order}
    for metric, by_codec in bd.items():
        for codec, result in by_codec.items():
            for image, reason in result.excluded.items():
                notes.append(f"BD-rate {metric}, {labels[codec]}: {image} excluded ({reason})")
    missing_ms_ssim = sorted({r.image for r in merged.records if r.ms_ssim is None})
    if missing_ms_ssim:
        notes.append("MS-SSIM not available (image under 161 px a side) for: " + ", ".join(missing_ms_ssim))
    return Report(
        reference=reference,
        codecs=order,
        labels=labels,
        images=images,
        descriptions={name: merged.codecs.get(name, {}) for name in order},
        curves=curves,
        bd_rates=bd,
        payload_bd_rates=payload_bd,
        sizes=sizes,
        timing=timing,
        sources=merged.sources,
        runs=merged.runs,
        notes=notes,
        operating_points=operating,
        lpips_net=lpips_net,
    )


def _sort_value(value: float | None) -> float:
    return math.inf if value is None else value


def _median(values: Sequence[float | None]) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.median(finite)) if finite else None


def _timing(by_image: dict[str, list[EvalRecord]]) -> dict[str, Any]:
    records = [r for rs in by_image.values() for r in rs]
    headers = [r.bytes - r.payload_bytes for r in records if r.payload_bytes is not None]
    return {
        "lpips_median_s": _median([r.lpips_seconds for r in records]),
        "encode_median_s": _median([r.encode_seconds for r in records]),
        "decode_median_s": _median([r.decode_seconds for r in records]),
        "encode_total_s": float(sum(r.encode_seconds for r in records)),
        "decode_total_s": float(sum(r.decode_seconds for r in records)),
        "header_median_bytes": _median(headers),
        "bpp_min": min(r.bpp for r in records),
        "bpp_max": max(r.bpp for r in records),
        "records": len(records),
        "images": len(by_image),
    }


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.1f}%"


def _markdown(report: Report) -> str:
    ref = report.label(report.reference)
    lpips = report.has_lpips
    net = f"ST-LPIPS {report.lpips_net}" if lpips else ""
    lines = [
        "# Codec evaluation",
        "",
        f"{len(report.images)} images; reference codec: {ref}. "
        f"Results: {', '.join(Path(s).name for s in report.sources)}.",
        "",
        f"## BD-rate against {ref}",
        "",
        "Bjontegaard-delta rate (pchip) per image, mean over images; negative means fewer bits than "
        f"{ref} at equal quality. Whole-file bpp, except the payload column (headers and "
        "container removed where the format allows)."
        + (
            f" LPIPS ({net}; lower is better): BD-rate on 1 - LPIPS, which rises with rate as "
            "Bjontegaard's method needs; the pairs of equal quality are those of LPIPS."
            if lpips else ""
        ),
        "",
        "| Codec | MS-SSIM (dB) | PSNR | MS-SSIM YCbCr (dB) | MS-SSIM (dB), payload bpp |"
        + (" LPIPS |" if lpips else "") + " Images |",
        "|---|---:|---:|---:|---:|" + ("---:|" if lpips else "") + "---:|",
    ]
    for codec in report.codecs:
        if codec == report.reference:
            lines.append(
                f"| {ref} | 0 (anchor) | 0 (anchor) | 0 (anchor) | 0 (anchor) | "
                + ("0 (anchor) | " if lpips else "") + f"{report.timing[codec]['images']} |"
            )
            continue
        row = [report.bd_rates[m][codec] for m in ("ms_ssim_db", "psnr", "ms_ssim_ycbcr_db")]
        payload = report.payload_bd_rates.get(codec)
        lines.append(
            f"| {report.label(codec)} | "
            + " | ".join(_percent(r.mean) for r in row)
            + f" | {_percent(payload.mean) if payload else 'n/a'} | "
            + (f"{_lpips_cell(report.bd_rates['lpips'][codec])} | " if lpips else "")
            + f"{len(row[0].per_image)} |"
        )
    if report.operating_points:
        lines += [
            "",
            f"## Operating points against {ref}",
            "",
            f"Codecs with at most {FEW_SETTINGS} settings, one row per setting (a single-rate model "
            "has too few points for a BD-rate). Per image, at the codec's own file size and "
            f"MS-SSIM: MS-SSIM (dB) minus {ref}'s at the same size, and the file size relative to "
            f"{ref}'s at the same MS-SSIM (mean size / mean size); each over the images where "
            f"{ref}'s measured range covers the point (image counts in brackets).",
            "",
            f"| Codec | Setting | Mean bpp | MS-SSIM (dB) vs {ref}, same size | Size vs {ref}, same MS-SSIM |",
            "|---|---:|---:|---:|---:|",
        ]
        for codec in report.codecs:
            for row in report.operating_points.get(codec, []):
                gain = "n/a" if row.quality_gain is None else f"{row.quality_gain:+.2f} dB ({row.gain_images})"
                size = "n/a" if row.relative_size is None else f"{100 * row.relative_size:.0f}% ({row.size_images})"
                lines.append(f"| {report.label(codec)} | {row.setting:g} | {row.mean_bpp:.3f} | {gain} | {size} |")
    for metric, title in (("ms_ssim", "MS-SSIM (RGB)"), ("ms_ssim_ycbcr", "MS-SSIM YCbCr (6/8, 1/8, 1/8)")):
        if metric not in report.sizes:
            continue
        levels = [cell.level for cell in report.sizes[metric][report.reference]]
        lines += [
            "",
            f"## File size at fixed {title}, relative to {ref}",
            "",
            "As Rippel & Bourdev (2017), Table 1: per image, file size interpolated at the quality "
            f"level. Cells: mean size over the images where both the codec and {ref} reach the level, "
            f"as a percentage of {ref}'s mean size on those same images (mean kB, number of images). "
            "The image set differs between cells, so compare percentages, not kB, across columns; "
            "n/a: reached by fewer than half of the images.",
            "",
            "| Codec | " + " | ".join(f"{level:g}" for level in levels) + " |",
            "|---|" + "---:|" * len(levels),
        ]
        for codec in report.codecs:
            cells = report.sizes[metric][codec]
            lines.append(f"| {report.label(codec)} | " + " | ".join(_size_cell(c) for c in cells) + " |")
    lines += [
        "",
        "## Speed",
        "",
        "Median wall-clock seconds per image over all images and settings (codec call only, "
        "metrics excluded), with library-default threading" + _jobs_note(report.runs) + "."
        + (f" LPIPS: median seconds of the metric ({net}, one thread) per reconstruction, the cost "
           "of the LPIPS column." if lpips else ""),
        "",
        "| Codec | Encode (ms) | Decode (ms) |" + (" LPIPS (ms) |" if lpips else "")
        + " Header (bytes, median) | bpp range | Library |",
        "|---|---:|---:|" + ("---:|" if lpips else "") + "---:|---|---|",
    ]
    for codec in report.codecs:
        t = report.timing[codec]
        header = "n/a" if t["header_median_bytes"] is None else f"{t['header_median_bytes']:.0f}"
        library = report.descriptions.get(codec, {}).get("library", "?")
        lines.append(
            f"| {report.label(codec)} | {_ms(t['encode_median_s'])} | {_ms(t['decode_median_s'])} | "
            + (f"{_ms(t.get('lpips_median_s'))} | " if lpips else "")
            + f"{header} | {t['bpp_min']:.3f} - {t['bpp_max']:.3f} | {library} |"
        )
    lines += [
        "",
        "## Rate-distortion curves",
        "",
        "Each image's curve is interpolated on a common bpp grid and averaged only where the "
        "image's measured range covers the grid point (no extrapolation; points covered by fewer "
        "than half of the images are dropped), as in Mentzer et al. (2018, sec. 4).",
        "",
        "![MS-SSIM vs bpp](rd_ms_ssim.png)",
        "",
        "![PSNR vs bpp](rd_psnr.png)",
        "",
    ]
    if lpips:
        lines += [f"![LPIPS vs bpp](rd_lpips.png) ({net}; lower is better)", ""]
    lines += [
        "## Codec settings",
        "",
        "| Codec | Setting swept | Values | Fixed options |",
        "|---|---|---|---|",
    ]
    for codec in report.codecs:
        d = report.descriptions.get(codec, {})
        params = ", ".join(f"{k}={v}" for k, v in d.get("parameters", {}).items()) or "-"
        values = ", ".join(f"{v:g}" for v in d.get("settings", []))
        lines.append(f"| {report.label(codec)} | {d.get('setting_name', '?')} | {values} | {params} |")
    lines += ["", "## Images", "", ", ".join(report.images)]
    if report.notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in report.notes]
    return "\n".join(lines) + "\n"


def _lpips_cell(result: BDRate) -> str:
    """The LPIPS BD-rate with its image count (it may differ from the MS-SSIM one)."""
    return _percent(result.mean) + (f" ({len(result.per_image)})" if result.mean is not None else "")


def _jobs_note(runs: list[dict[str, Any]]) -> str:
    jobs = sorted({run.get("jobs") for run in runs if run.get("jobs")})
    cpus = sorted({run.get("cpu_count") for run in runs if run.get("cpu_count")})
    if not jobs:
        return ""
    return f"; {'/'.join(map(str, jobs))} parallel worker(s) on {'/'.join(map(str, cpus))} CPU core(s)"


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.1f}"


def _size_cell(cell: RelativeSize) -> str:
    if cell.relative is None:
        return "n/a"
    return f"{cell.relative * 100:.0f}% ({cell.mean_bytes / 1000:.1f} kB, {cell.images})"


def report_paths(out_dir: str | os.PathLike, report: Report | None = None) -> list[Path]:
    """The files :func:`write_report` creates in ``out_dir`` (for ``report``: with the LPIPS plot
    if it has LPIPS)."""
    names = REPORT_FILES + (LPIPS_FILES if report is not None and report.has_lpips else ())
    return [Path(out_dir) / name for name in names]


def write_report(report: Report, out_dir: str | os.PathLike, *, force: bool = False) -> list[Path]:
    """Render everything in memory first, then write each file atomically; refuses to overwrite
    existing report files unless ``force``."""
    from imgcomp.eval.plots import close, figure_bytes, rd_figure

    targets = report_paths(out_dir, report)
    check_writable(targets, force)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ImgcompError(f"{out_dir}: exists and is not a folder")
    contents: dict[str, bytes] = {
        "report.md": report.to_markdown().encode("utf-8"),
        "report.json": json.dumps(report.to_dict(), indent=1, allow_nan=False, default=_json_default).encode(
            "utf-8"
        ),
    }
    plotted = (("ms_ssim", "rd_ms_ssim"), ("psnr", "rd_psnr")) + ((("lpips", "rd_lpips"),) if report.has_lpips else ())
    for metric, stem in plotted:
        figure = rd_figure(report, metric)
        for fmt in ("png", "svg"):
            contents[f"{stem}.{fmt}"] = figure_bytes(figure, fmt)
        close(figure)
    for path in targets:
        data = contents[path.name]
        write_atomic(path, lambda handle, data=data: handle.write(data), overwrite=force)
    return targets


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot serialise {type(value).__name__}")
