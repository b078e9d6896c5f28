"""Downstream machine perception: text detection and recognition on compressed images.

The offline analogue of the object-detection test of Rippel & Bourdev (2017, sec. 6.3): the
PP-OCRv4 text detector (DB) and recogniser (SVTR-LCNet/CTC) shipped as ONNX weights in the
``rapidocr-onnxruntime`` wheel read the originals and every codec's reconstructions, and are
scored against ground truth with known text (:mod:`imgcomp.data.text_scenes`).

Scoring, per image, on text lines (axis-aligned boxes; the detector's quadrilaterals are replaced
by their bounding rectangles):

* **Detection**: predictions that split one true line into pieces are joined first
  (:func:`merge_split_lines`); then a one-to-one matching of predicted to ground-truth boxes that maximises the summed
  IoU among pairs with IoU >= 0.5 (Hungarian, ``scipy.optimize.linear_sum_assignment``); matched
  pairs are true positives, the other predictions false positives, the other ground-truth lines
  misses. Precision, recall and F1 pool the counts over all images (micro average).
* **Recognition**: character error rate, the Levenshtein distance between recognised and true
  text divided by the true text's length, both with all whitespace removed (the recogniser's
  spaces between words are unreliable), case-sensitive. Two variants, pooled over images as
  sum of distances / sum of lengths: *matched* CER over matched pairs only, and *end-to-end* CER
  over every ground-truth line, a missed line counting as all its characters wrong (the headline
  figure: it falls with detection too). False positives do not enter either CER.

The recogniser's own confidence threshold is off (``text_score=0``): every box the detector keeps
(its ``box_thresh`` 0.5) is scored, so detection F1 measures the detector alone. The angle
classifier is off (the scenes' text is upright).

Codecs are run through :mod:`imgcomp.codecs` exactly as ``imgcomp eval`` does (``encode`` to the
bytes of a real file, ``decode``; bpp from the file's size). Results go to a JSON file rewritten
atomically after every (image, codec), so an interrupted run resumes.
"""

from __future__ import annotations

import concurrent.futures
import io
import json
import multiprocessing
import os
import platform
import re
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from imgcomp.codecs import Setting, codec_factory, get_codec
from imgcomp.data.folder import list_images
from imgcomp.data.text_scenes import load_ground_truth
from imgcomp.errors import ImgcompError
from imgcomp.io import file_sha256, load_image, write_atomic
from imgcomp.metrics import bits_per_pixel

RESULTS_FORMAT = "imgcomp-downstream-ocr/1"
IOU_THRESHOLD = 0.5
STUDY_RATES = (0.23, 0.37, 0.67, 1.0)
ORIGINAL = "original"
"""The codec name under which the uncompressed images' scores are recorded."""

Box = Sequence[float]


# --- scoring -------------------------------------------------------------------------------


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two ``[x0, y0, x1, y1]`` boxes (0 if either is empty)."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match_boxes(truth: Sequence[Box], predicted: Sequence[Box], threshold: float = IOU_THRESHOLD) -> list[tuple[int, int]]:
    """One-to-one pairs ``(truth index, predicted index)`` with IoU >= ``threshold``, chosen to
    maximise the summed IoU (Hungarian algorithm)."""
    if not truth or not predicted:
        return []
    from scipy.optimize import linear_sum_assignment

    overlap = np.array([[iou(t, p) for p in predicted] for t in truth])
    eligible = overlap >= threshold
    rows, cols = linear_sum_assignment(np.where(eligible, overlap, 0.0), maximize=True)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if eligible[r, c]]


def normalise_text(text: str) -> str:
    """The text CER compares: all whitespace removed, case kept."""
    return re.sub(r"\s+", "", text)


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions of one character each)."""
    from rapidfuzz.distance import Levenshtein

    return int(Levenshtein.distance(a, b))


@dataclass
class Counts:
    """Pooled detection and recognition counts (add them over images, then read the rates)."""

    truth: int = 0
    predicted: int = 0
    matched: int = 0
    truth_chars: int = 0
    matched_truth_chars: int = 0
    matched_errors: int = 0
    end_to_end_errors: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(*(getattr(self, f) + getattr(other, f) for f in self.__dataclass_fields__))

    @property
    def precision(self) -> float | None:
        return self.matched / self.predicted if self.predicted else None

    @property
    def recall(self) -> float | None:
        return self.matched / self.truth if self.truth else None

    @property
    def f1(self) -> float:
        """2 TP / (2 TP + FP + FN); 1 when there is nothing to find and nothing found."""
        denominator = self.truth + self.predicted
        return 2 * self.matched / denominator if denominator else 1.0

    @property
    def cer_matched(self) -> float | None:
        return self.matched_errors / self.matched_truth_chars if self.matched_truth_chars else None

    @property
    def cer_end_to_end(self) -> float | None:
        return self.end_to_end_errors / self.truth_chars if self.truth_chars else None

    def rates(self) -> dict[str, float | None]:
        return {"precision": self.precision, "recall": self.recall, "f1": self.f1,
                "cer": self.cer_end_to_end, "cer_matched": self.cer_matched}


def merge_split_lines(
    truth: Sequence[Mapping[str, Any]], predicted: Sequence[Mapping[str, Any]], threshold: float = IOU_THRESHOLD
) -> list[dict[str, Any]]:
    """Join predictions that split one true line into pieces (the detector cuts a line at wide
    word gaps; DetEval's many-to-one case): predictions lying at least half inside the same true
    line (the one holding most of each) become one, their union box and their texts in reading
    order, if that union has IoU >= ``threshold`` with the line. Other predictions pass unchanged."""
    groups: dict[int, list[int]] = {}
    for index, line in enumerate(predicted):
        box = line["box"]
        area = (box[2] - box[0]) * (box[3] - box[1])
        inside = [_intersection(box, t["box"]) / area if area > 0 else 0.0 for t in truth]
        if inside and max(inside) >= 0.5:
            groups.setdefault(int(np.argmax(inside)), []).append(index)
    merged: dict[int, dict[str, Any]] = {}
    absorbed: set[int] = set()
    for target, members in groups.items():
        if len(members) < 2:
            continue
        boxes = [predicted[m]["box"] for m in members]
        union = [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]
        if iou(union, truth[target]["box"]) < threshold:
            continue
        ordered = sorted(members, key=lambda m: predicted[m]["box"][0])
        merged[members[0]] = {"text": " ".join(predicted[m]["text"] for m in ordered), "box": union}
        absorbed.update(members)
    return [merged[i] if i in merged else dict(line) for i, line in enumerate(predicted)
            if i in merged or i not in absorbed]


def _intersection(a: Box, b: Box) -> float:
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    return width * height if width > 0 and height > 0 else 0.0


def score_image(truth: Sequence[Mapping[str, Any]], predicted: Sequence[Mapping[str, Any]]) -> Counts:
    """Counts for one image: ``truth`` and ``predicted`` are lists of ``{"text", "box"}``;
    split lines are joined first (:func:`merge_split_lines`)."""
    predicted = merge_split_lines(truth, predicted)
    pairs = match_boxes([t["box"] for t in truth], [p["box"] for p in predicted])
    counts = Counts(truth=len(truth), predicted=len(predicted), matched=len(pairs))
    matched_truth = {t: p for t, p in pairs}
    for index, line in enumerate(truth):
        reference = normalise_text(line["text"])
        counts.truth_chars += len(reference)
        if index in matched_truth:
            errors = edit_distance(reference, normalise_text(predicted[matched_truth[index]]["text"]))
            counts.matched_truth_chars += len(reference)
            counts.matched_errors += errors
            counts.end_to_end_errors += errors
        else:
            counts.end_to_end_errors += len(reference)
    return counts


# --- the OCR engine ------------------------------------------------------------------------


def _rapidocr():
    try:
        import rapidocr_onnxruntime
    except ImportError as exc:
        raise ImgcompError(
            f"the OCR evaluation needs rapidocr-onnxruntime ({exc}); install it with pip install 'imgcomp[ocr]'"
        ) from None
    return rapidocr_onnxruntime


class OcrEngine:
    """RapidOCR (PP-OCRv4 det + rec, ONNX Runtime) with the settings this evaluation uses."""

    def __init__(self, threads: int = 1) -> None:
        RapidOCR = _rapidocr().RapidOCR
        options = {f"{part}_{name}": threads for part in ("det", "cls", "rec")
                   for name in ("intra_op_num_threads", "inter_op_num_threads")}
        self._ocr = RapidOCR(text_score=0.0, use_cls=False, **options)

    @staticmethod
    def describe() -> dict[str, Any]:
        """Library versions and the SHA-256 of the model files: what identifies the results."""
        from importlib.metadata import version

        models = Path(_rapidocr().__file__).parent / "models"
        return {
            "library": f"rapidocr-onnxruntime {version('rapidocr-onnxruntime')}, onnxruntime {version('onnxruntime')}",
            "models": {path.name: file_sha256(path) for path in sorted(models.glob("*.onnx"))
                       if "cls" not in path.name},
            "options": {"text_score": 0.0, "use_cls": False, "det_box_thresh": 0.5, "det_unclip_ratio": 1.6},
        }

    def read(self, image: np.ndarray) -> list[dict[str, Any]]:
        """Text lines found in an ``(H, W, 3)`` uint8 RGB image: ``[{"text", "box", "score"}]``."""
        result, _ = self._ocr(np.ascontiguousarray(image[:, :, ::-1]), use_cls=False)  # RapidOCR wants BGR
        lines = []
        for quad, text, score in result or []:
            xs, ys = [float(p[0]) for p in quad], [float(p[1]) for p in quad]
            lines.append({"text": str(text), "box": [min(xs), min(ys), max(xs), max(ys)], "score": float(score)})
        return lines


# --- the run -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Task:
    image_path: str
    image_name: str
    codec: str
    settings: tuple[Setting, ...]


_ENGINE: OcrEngine | None = None


def _engine() -> OcrEngine:
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = OcrEngine()
    return _ENGINE


def _run_task(task: _Task) -> list[dict[str, Any]]:
    """Score the OCR of one image's original (codec ``original``) or of one codec's
    reconstructions at the task's settings."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # parallelism comes from worker processes
    try:
        return _score_task(task)
    finally:
        torch.set_num_threads(threads)


def _score_task(task: _Task) -> list[dict[str, Any]]:
    image = load_image(task.image_path)
    truth = load_ground_truth(task.image_path)
    height, width = image.shape[:2]
    engine = _engine()
    if task.codec == ORIGINAL:
        counts = score_image(truth, engine.read(image))
        return [{"image": task.image_name, "codec": ORIGINAL, "setting": None, "bpp": 24.0, **counts.__dict__}]
    codec = get_codec(task.codec)
    records = []
    for setting in task.settings:
        data = codec.encode(image, setting)
        decoded = codec.decode(data)
        if decoded.shape != image.shape:
            raise ImgcompError(f"{task.codec}: decoded {task.image_name} as {decoded.shape}, expected {image.shape}")
        counts = score_image(truth, engine.read(decoded))
        records.append({"image": task.image_name, "codec": task.codec, "setting": setting,
                        "bpp": bits_per_pixel(len(data), height, width), **counts.__dict__})
    return records


def _init_worker(factories: dict[str, Any]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from imgcomp.codecs import available_codecs, register_codec

    known = set(available_codecs())
    for name, factory in factories.items():
        if name not in known:
            register_codec(name, factory)


def evaluate_ocr(
    image_dir: str | os.PathLike,
    out: str | os.PathLike,
    codecs: Sequence[str],
    *,
    settings: Mapping[str, Sequence[Setting]] | None = None,
    jobs: int = 1,
    force: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Run OCR on every image of ``image_dir`` (each with its ground-truth ``.json``) and on its
    reconstructions by every codec at every setting; write (and resume) the results JSON ``out``.

    Returns the results document: ``config`` (images, codecs with their settings, OCR engine) and
    ``records`` (one per image, codec and setting: bpp and the :class:`Counts`).
    """
    out = Path(out)
    if out.is_dir():
        raise ImgcompError(f"{out}: is a folder; expected a results file name such as ocr.json")
    if jobs < 1:
        raise ImgcompError(f"--jobs must be at least 1, got {jobs}")
    for name in codecs:
        codec_factory(name)
    sweep = {name: tuple((settings or {}).get(name) or get_codec(name).default_settings) for name in codecs}
    for name in settings or {}:
        if name not in sweep:
            raise ImgcompError(f"settings given for codec {name!r}, which is not being evaluated")
    paths = list_images(image_dir)
    for path in paths:
        load_ground_truth(path)
    config = json.loads(json.dumps({
        "images": {path.name: file_sha256(path) for path in paths},
        "ground_truth": {path.name: file_sha256(path.with_suffix(".json")) for path in paths},
        "codecs": {name: {**get_codec(name).describe(), "settings": list(sweep[name])} for name in sweep},
        "ocr": OcrEngine.describe(),
        "iou_threshold": IOU_THRESHOLD,
    }))
    document = _open(out, config, force)
    done = {(r["image"], r["codec"], r["setting"]) for r in document["records"]}
    tasks = []
    for path in paths:  # codec by codec, so a stopped run leaves whole curves
        if (path.name, ORIGINAL, None) not in done:
            tasks.append(_Task(str(path), path.name, ORIGINAL, ()))
    for name in sweep:
        for path in paths:
            missing = tuple(s for s in sweep[name] if (path.name, name, s) not in done)
            if missing:
                tasks.append(_Task(str(path), path.name, name, missing))
    if not tasks:
        return document
    total, finished = len(tasks), 0
    started = time.perf_counter()
    run = {"started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "jobs": jobs,
           "cpu_count": os.cpu_count(), "platform": platform.platform(), "seconds": 0.0, "finished": False}
    document["runs"].append(run)

    def collect(records: list[dict[str, Any]]) -> None:
        nonlocal finished
        document["records"].extend(records)
        finished += 1
        run["seconds"] = round(time.perf_counter() - started, 1)
        _save(out, document)
        if on_progress:
            on_progress(finished, total)

    if jobs == 1 or len(tasks) <= 1:
        for task in tasks:
            collect(_run_task(task))
    else:
        factories = {name: codec_factory(name) for name in codecs}
        with concurrent.futures.ProcessPoolExecutor(
            max_workers=min(jobs, len(tasks)), mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker, initargs=(factories,),
        ) as pool:
            try:
                for future in concurrent.futures.as_completed([pool.submit(_run_task, t) for t in tasks]):
                    collect(future.result())
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    run["finished"] = True
    _save(out, document)
    return document


def _open(out: Path, config: dict[str, Any], force: bool) -> dict[str, Any]:
    if out.exists() and not force:
        try:
            document = json.loads(out.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ImgcompError(f"{out}: unreadable ({exc}); refusing to overwrite it (use --force)") from None
        if document.get("format") != RESULTS_FORMAT:
            raise ImgcompError(f"{out}: not a downstream OCR results file; refusing to overwrite it (use --force)")
        if document.get("config") != config:
            raise ImgcompError(f"{out}: results of a different run (images, codecs or OCR differ); use --force or another --out")
        return document
    return {"format": RESULTS_FORMAT, "config": config, "runs": [], "records": []}


def _save(out: Path, document: dict[str, Any]) -> None:
    data = (json.dumps(document, indent=None, separators=(",", ":")) + "\n").encode("utf-8")
    write_atomic(out, lambda handle: handle.write(data))


def load_ocr_results(path: str | os.PathLike) -> dict[str, Any]:
    """A results document written by :func:`evaluate_ocr`."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ImgcompError(f"{path}: unreadable ({exc})") from None
    if document.get("format") != RESULTS_FORMAT:
        raise ImgcompError(f"{path}: not a downstream OCR results file")
    return document


# --- curves and the table ------------------------------------------------------------------


def curves(document: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Per codec, one point per setting: mean bpp over the images and the pooled rates
    (precision, recall, F1, end-to-end and matched CER), sorted by bpp. Only settings measured on
    every image count. ``original`` holds the uncompressed images' single point."""
    images = set(document["config"]["images"])
    grouped: dict[tuple[str, Any], list[dict[str, Any]]] = {}
    for record in document["records"]:
        grouped.setdefault((record["codec"], record["setting"]), []).append(record)
    fields = list(Counts.__dataclass_fields__)
    result: dict[str, list[dict[str, Any]]] = {}
    for (codec, setting), records in grouped.items():
        if {r["image"] for r in records} != images:
            continue
        total = sum((Counts(**{f: r[f] for f in fields}) for r in records), Counts())
        point = {"setting": setting, "bpp": float(np.mean([r["bpp"] for r in records])), **total.rates(),
                 "images": len(records)}
        result.setdefault(codec, []).append(point)
    for points in result.values():
        points.sort(key=lambda p: p["bpp"])
    return result


def at_rate(points: Sequence[Mapping[str, Any]], key: str, bpp: float) -> float | None:
    """``key`` at ``bpp`` by linear interpolation in bpp between the two neighbouring settings of
    a codec's curve; None outside the measured range (no extrapolation)."""
    usable = [(p["bpp"], p[key]) for p in points if p[key] is not None]
    if not usable or bpp < usable[0][0] or bpp > usable[-1][0]:
        return None
    rates, values = zip(*usable)
    return float(np.interp(bpp, rates, values))


def summarise(document: Mapping[str, Any], rates: Sequence[float] = STUDY_RATES) -> dict[str, Any]:
    """Curves, and F1 and end-to-end CER at ``rates`` for every codec (with the originals'
    ceiling); what ``imgcomp downstream ocr`` writes as its summary."""
    codec_curves = curves(document)
    labels = {name: info.get("label", name) for name, info in document["config"]["codecs"].items()}
    table = {}
    for name, points in codec_curves.items():
        if name == ORIGINAL:
            continue
        table[name] = {
            "label": labels.get(name, name),
            "bpp_range": [points[0]["bpp"], points[-1]["bpp"]],
            "f1": {str(r): at_rate(points, "f1", r) for r in rates},
            "cer": {str(r): at_rate(points, "cer", r) for r in rates},
            "cer_matched": {str(r): at_rate(points, "cer_matched", r) for r in rates},
        }
    original = codec_curves.get(ORIGINAL, [None])[0]
    return {
        "format": "imgcomp-downstream-ocr-summary/1",
        "method": ("detection F1 (IoU >= 0.5, Hungarian matching), end-to-end CER (missed lines count as "
                   "all wrong) and matched CER, pooled over images; values at a rate interpolated "
                   "linearly in bpp between a codec's two neighbouring settings, null outside its range"),
        "rates": list(rates),
        "images": len(document["config"]["images"]),
        "truth_lines": None if original is None else _truth_lines(document),
        "original": original,
        "table": table,
        "curves": codec_curves,
    }


def _truth_lines(document: Mapping[str, Any]) -> int:
    return sum(r["truth"] for r in document["records"] if r["codec"] == ORIGINAL)


def table_markdown(summary: Mapping[str, Any]) -> str:
    """The table at the study rates: F1 / end-to-end CER per codec, the originals as ceiling."""
    rates = summary["rates"]
    head = "| codec | bpp range | " + " | ".join(f"F1 @ {r}" for r in rates) + " | " + \
        " | ".join(f"CER @ {r}" for r in rates) + " |"
    rows = [head, "|---|---|" + "---:|" * (2 * len(rates))]

    def fmt(value: float | None, percent: bool = False) -> str:
        if value is None:
            return "n/a"
        return f"{100 * value:.1f}%" if percent else f"{value:.3f}"

    original = summary.get("original")
    if original:
        rows.append("| original (ceiling) | 24 | " + " | ".join(fmt(original["f1"]) for _ in rates) + " | "
                    + " | ".join(fmt(original["cer"], True) for _ in rates) + " |")
    for entry in summary["table"].values():
        low, high = entry["bpp_range"]
        rows.append(f"| {entry['label']} | {low:.2f}-{high:.2f} | "
                    + " | ".join(fmt(entry["f1"][str(r)]) for r in rates) + " | "
                    + " | ".join(fmt(entry["cer"][str(r)], True) for r in rates) + " |")
    return "\n".join(rows) + "\n"


def plot_curves(summary: Mapping[str, Any], out_dir: str | os.PathLike) -> list[Path]:
    """``f1_vs_bpp.png`` and ``cer_vs_bpp.png``: one curve per codec, the originals dashed, the
    study rates as dotted verticals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    written = []
    for key, name, ylabel in (("f1", "f1_vs_bpp.png", "detection F1 (IoU >= 0.5)"),
                              ("cer", "cer_vs_bpp.png", "end-to-end character error rate")):
        figure, axis = plt.subplots(figsize=(7, 4.5), dpi=110)
        for codec, points in summary["curves"].items():
            if codec == ORIGINAL:
                continue
            usable = [p for p in points if p[key] is not None]
            label = summary["table"].get(codec, {}).get("label", codec)
            axis.plot([p["bpp"] for p in usable], [p[key] for p in usable], marker="o", markersize=3, label=label)
        original = summary.get("original")
        if original and original[key] is not None:
            axis.axhline(original[key], color="black", linestyle="--", linewidth=1, label="original")
        for rate in summary["rates"]:
            axis.axvline(rate, color="grey", linestyle=":", linewidth=0.8)
        axis.set_xscale("log")
        axis.set_xlabel("bits per pixel (whole file)")
        axis.set_ylabel(ylabel)
        axis.set_title(f"PP-OCRv4 on {summary['images']} text scenes")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8)
        figure.tight_layout()
        path = out_dir / name
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        plt.close(figure)
        write_atomic(path, lambda handle, data=buffer.getvalue(): handle.write(data))
        written.append(path)
    return written

