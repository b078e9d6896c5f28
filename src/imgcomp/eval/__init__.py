"""Evaluation harness: run codecs over images (:mod:`.runner`), summarise the results the way the
papers do (:mod:`.curves`, :mod:`.bdrate`, :mod:`.size_at_quality`, :mod:`.report`) and compare
reconstructions side by side (:mod:`.compare`)."""

from __future__ import annotations

from imgcomp.eval.bdrate import BDRate, bd_rate_percent, bd_rates
from imgcomp.eval.curves import AverageCurve, RDCurve, average_curve, bpp_grid, monotone_points, rd_curve
from imgcomp.eval.results import EvalRecord, ResultsFile, load_results, save_results
from imgcomp.eval.runner import EvalSummary, evaluate_folder, find_images
from imgcomp.eval.size_at_quality import relative_sizes, size_at_quality

__all__ = [
    "AverageCurve",
    "BDRate",
    "EvalRecord",
    "EvalSummary",
    "RDCurve",
    "ResultsFile",
    "average_curve",
    "bd_rate_percent",
    "bd_rates",
    "bpp_grid",
    "evaluate_folder",
    "find_images",
    "load_results",
    "monotone_points",
    "rd_curve",
    "relative_sizes",
    "save_results",
    "size_at_quality",
]
