"""``imgcomp study analyze``: preferences with confidence intervals, Bradley-Terry scales, plots, CSV.

* Raters are excluded when they fail attention checks: a rater's share of correct attention
  trials (the original picked over its heavily degraded copy) must be at least ``min_attention``
  (default 1.0: every check passed). Raters who answered no attention check are kept and counted.
* Per target rate and codec pair: the share of votes for each codec with a Wilson score interval
  (Wilson 1927), ``(p + z²/2n ± z sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)``.
* Per target rate: a Bradley-Terry model, ``P(i beats j) = π_i / (π_i + π_j)`` (Bradley & Terry
  1952), fitted by Hunter's (2004) MM algorithm, ``π_i ← W_i / Σ_j n_ij / (π_i + π_j)``, with a
  weak prior (``prior`` virtual wins each way on every compared pair, so a codec that never wins
  keeps a finite scale); reported as ``log π`` minus the log strength of an anchor codec
  (JPEG 4:2:0, or the first codec compared at every rate), so the scales of different rates share
  a zero, with a 95% bootstrap interval over raters.
* Plots as Patel et al.'s Fig. 7: the preference for one codec against each other codec vs bpp.
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from imgcomp.errors import ImgcompError
from imgcomp.study.definition import Study

Z95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (``(nan, nan)`` when ``n`` is 0)."""
    if n == 0:
        return math.nan, math.nan
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def bradley_terry(wins: np.ndarray, prior: float = 0.1, iterations: int = 10_000,
                  tol: float = 1e-10) -> np.ndarray:
    """Bradley-Terry strengths from ``wins[i, j]`` (times i beat j) by Hunter's MM algorithm;
    ``prior`` virtual wins each way on every compared pair. Returns ``log π`` with mean 0; a
    codec compared with nothing gets ``nan``."""
    wins = np.asarray(wins, dtype=np.float64)
    k = wins.shape[0]
    compared = (wins + wins.T) > 0
    w = wins + prior * compared
    n = w + w.T
    active = compared.any(axis=1)
    strength = np.where(active, 1.0, np.nan)
    if not active.any():
        return strength
    idx = np.flatnonzero(active)
    w, n = w[np.ix_(idx, idx)], n[np.ix_(idx, idx)]
    total_wins = w.sum(axis=1)
    p = np.ones(len(idx))
    for _ in range(iterations):
        denom = (n / (p[:, None] + p[None, :])).sum(axis=1)
        new = total_wins / denom
        new /= np.exp(np.mean(np.log(new)))
        if np.max(np.abs(new - p)) < tol:
            p = new
            break
        p = new
    out = np.full(k, np.nan)
    out[idx] = np.log(p)
    return out


def _rater_attention(trials: list[dict[str, Any]]) -> dict[str, tuple[int, int]]:
    result: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for t in trials:
        if t["kind"] == "attention":
            result[t["rater"]][1] += 1
            result[t["rater"]][0] += t["chosen_id"] == t["correct_id"]
    return {rater: (c, n) for rater, (c, n) in result.items()}


def default_anchor(study: Study) -> str:
    """The codec the Bradley-Terry scales are relative to: the first codec (in the study's order,
    JPEG 4:2:0 first if present) compared at every rate, else the first codec."""
    codecs = list(study.definition["codecs"])
    recons = study.definition["reconstructions"]
    everywhere = [c for c in codecs if all(
        any(r["codec"] == c and r["target_bpp"] == t for r in recons.values()) for t in study.definition["rates"])]
    ordered = sorted(everywhere or codecs, key=lambda c: c != "jpeg420")
    return ordered[0]


def analyze_votes(study: Study, trials: list[dict[str, Any]], *, min_attention: float = 1.0,
                  bootstrap: int = 1000, seed: int = 0, focus: str | None = None,
                  anchor: str | None = None) -> dict[str, Any]:
    """The analysis of answered ``trials`` (:func:`imgcomp.study.db.answered_trials`) as a dict:
    raters (kept, excluded), per-pair preferences, Bradley-Terry scales (``log π`` minus the
    ``anchor`` codec's, at each rate), and the vote rows."""
    definition = study.definition
    codecs = list(definition["codecs"])
    focus = focus or codecs[0]
    anchor = anchor or default_anchor(study)
    for option, value in (("--focus", focus), ("--anchor", anchor)):
        if value not in codecs:
            raise ImgcompError(f"{option} {value!r} is not a codec of this study ({', '.join(codecs)})")
    recons = definition["reconstructions"]
    attention = _rater_attention(trials)
    raters = sorted({t["rater"] for t in trials})
    excluded = sorted(r for r, (c, n) in attention.items() if n and c / n < min_attention)
    unchecked = sorted(r for r in raters if r not in attention)
    kept = [r for r in raters if r not in excluded]
    votes = []
    for t in trials:
        if t["kind"] != "compare":
            continue
        c = study.comparisons.get(t["comparison_id"])
        if c is None:
            continue
        winner = recons[t["chosen_id"]]["codec"]
        other_id = t["left_id"] if t["chosen_id"] == t["right_id"] else t["right_id"]
        votes.append({
            "rater": t["rater"], "excluded": t["rater"] in excluded, "comparison": c["id"],
            "image": definition["images"][c["image"]]["name"], "target_bpp": c["target_bpp"],
            "winner": winner, "loser": recons[other_id]["codec"],
            "winner_bpp": recons[t["chosen_id"]]["bpp"], "loser_bpp": recons[other_id]["bpp"],
            "left": recons[t["left_id"]]["codec"], "right": recons[t["right_id"]]["codec"],
            "choice": t["choice"], "response_ms": t["response_ms"], "magnifier": t["magnifier"],
            "answered_at": t["answered_at"],
        })
    counted = [v for v in votes if not v["excluded"]]
    pairs = _pairs(study, counted)
    scales = _scales(study, counted, codecs, codecs.index(anchor), bootstrap, seed)
    return {
        "study": str(study.folder), "definition_sha256": study.sha256,
        "raters": {"total": len(raters), "kept": len(kept), "excluded": len(excluded),
                   "without_attention_check": len(unchecked), "min_attention": min_attention,
                   "attention": {r: {"correct": c, "checks": n} for r, (c, n) in attention.items()}},
        "votes": {"counted": len(counted), "excluded": len(votes) - len(counted)},
        "focus": focus, "anchor": anchor, "codecs": codecs, "rates": definition["rates"],
        "pairs": pairs, "bradley_terry": scales, "vote_rows": votes,
    }


def _mean_bpp(study: Study, target: float, codec: str) -> float | None:
    values = [r["bpp"] for r in study.definition["reconstructions"].values()
              if r["codec"] == codec and r["target_bpp"] == target]
    return float(np.mean(values)) if values else None


def _pairs(study: Study, votes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    codecs = list(study.definition["codecs"])
    rows = []
    for target in study.definition["rates"]:
        for i, a in enumerate(codecs):
            for b in codecs[i + 1:]:
                here = [v for v in votes if v["target_bpp"] == target and {v["winner"], v["loser"]} == {a, b}]
                wins_a = sum(v["winner"] == a for v in here)
                n = len(here)
                low, high = wilson_interval(wins_a, n)
                bpp_a = [v["winner_bpp"] if v["winner"] == a else v["loser_bpp"] for v in here]
                bpp_b = [v["winner_bpp"] if v["winner"] == b else v["loser_bpp"] for v in here]
                rows.append({
                    "target_bpp": target, "codec_a": a, "codec_b": b, "wins_a": wins_a,
                    "wins_b": n - wins_a, "n": n, "pref_a": wins_a / n if n else None,
                    "ci_low": None if n == 0 else low, "ci_high": None if n == 0 else high,
                    "mean_bpp_a": float(np.mean(bpp_a)) if n else _mean_bpp(study, target, a),
                    "mean_bpp_b": float(np.mean(bpp_b)) if n else _mean_bpp(study, target, b),
                })
    return rows


def _win_matrix(votes: list[dict[str, Any]], codecs: list[str]) -> np.ndarray:
    index = {c: i for i, c in enumerate(codecs)}
    wins = np.zeros((len(codecs), len(codecs)))
    for v in votes:
        wins[index[v["winner"]], index[v["loser"]]] += 1
    return wins


def _relative(log_strength: np.ndarray, anchor: int) -> np.ndarray:
    """Log strengths minus the anchor's (unchanged, mean 0, where the anchor was not compared)."""
    return log_strength - log_strength[anchor] if math.isfinite(log_strength[anchor]) else log_strength


def _scales(study, votes, codecs, anchor, bootstrap, seed) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    rows = []
    for target in study.definition["rates"]:
        here = [v for v in votes if v["target_bpp"] == target]
        fit = _relative(bradley_terry(_win_matrix(here, codecs)), anchor)
        by_rater: dict[str, list] = defaultdict(list)
        for v in here:
            by_rater[v["rater"]].append(v)
        rater_ids = sorted(by_rater)
        samples = []
        if rater_ids and bootstrap > 0:
            for _ in range(bootstrap):
                drawn = rng.integers(0, len(rater_ids), len(rater_ids))
                sample = [v for j in drawn for v in by_rater[rater_ids[j]]]
                samples.append(_relative(bradley_terry(_win_matrix(sample, codecs)), anchor))
        samples_array = np.array(samples) if samples else np.empty((0, len(codecs)))
        for i, codec in enumerate(codecs):
            column = samples_array[:, i] if len(samples_array) else np.array([])
            column = column[np.isfinite(column)]
            ok = math.isfinite(fit[i])
            rows.append({
                "target_bpp": target, "codec": codec, "votes": sum(codec in (v["winner"], v["loser"]) for v in here),
                "log_strength": float(fit[i]) if ok else None,
                "ci_low": float(np.percentile(column, 2.5)) if ok and len(column) else None,
                "ci_high": float(np.percentile(column, 97.5)) if ok and len(column) else None,
                "mean_bpp": _mean_bpp(study, target, codec),
            })
    return rows


OUTPUT_NAMES = ("summary.json", "pairs.csv", "bradley_terry.csv", "votes.csv", "preference.png",
                "bradley_terry.png")


def write_outputs(result: dict[str, Any], out: Path, labels: dict[str, str] | None = None, *,
                  force: bool = False) -> list[Path]:
    """``summary.json``, ``pairs.csv``, ``bradley_terry.csv``, ``votes.csv``, and the plots
    ``preference.png`` and ``bradley_terry.png`` in ``out``; returns the paths. Existing files of
    these names are replaced only with ``force``."""
    from imgcomp.io import check_writable

    out = Path(out)
    check_writable([out / name for name in OUTPUT_NAMES], force)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    summary = {k: v for k, v in result.items() if k != "vote_rows"}
    path = out / "summary.json"
    path.write_text(json.dumps(summary, indent=1) + "\n")
    written.append(path)
    for name, rows in (("pairs.csv", result["pairs"]), ("bradley_terry.csv", result["bradley_terry"]),
                       ("votes.csv", result["vote_rows"])):
        written.append(_write_csv(out / name, rows))
    written += _plots(result, out, labels or {})
    return written


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    with open(path, "w", newline="") as handle:
        if rows:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return path


def _plots(result: dict[str, Any], out: Path, labels: dict[str, str]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    focus = result["focus"]
    name = lambda c: labels.get(c, c)  # noqa: E731
    others = [c for c in result["codecs"] if c != focus]
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    for number, other in enumerate(others):
        dodge = 0.006 * (number - (len(others) - 1) / 2)  # side by side, not on top of each other
        xs, ys, lo, hi = [], [], [], []
        for row in result["pairs"]:
            if {row["codec_a"], row["codec_b"]} != {focus, other} or not row["n"]:
                continue
            flip = row["codec_a"] != focus
            p = row["pref_a"] if not flip else 1 - row["pref_a"]
            low, high = (row["ci_low"], row["ci_high"]) if not flip else (1 - row["ci_high"], 1 - row["ci_low"])
            xs.append((row["mean_bpp_a"] if not flip else row["mean_bpp_b"]) + dodge)
            ys.append(100 * p)
            lo.append(max(0.0, 100 * (p - low)))
            hi.append(max(0.0, 100 * (high - p)))
        if xs:
            ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3, label=f"vs {name(other)}")
    ax.axhline(50, color="grey", lw=1, ls="--")
    ax.set_ylim(0, 100)
    ax.set_xlabel("bits per pixel (mean over images; series offset by 0.006 to stay apart)")
    ax.set_ylabel(f"% of votes for {name(focus)}")
    r = result["raters"]
    ax.set_title(f"2AFC preference for {name(focus)} (95% Wilson CI)\n"
                 f"{r['kept']} raters kept, {r['excluded']} excluded by attention checks", fontsize=10)
    preference = _finish(fig, ax, out / "preference.png")

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    for number, codec in enumerate(result["codecs"]):
        dodge = 0.006 * (number - (len(result["codecs"]) - 1) / 2)
        rows = [row for row in result["bradley_terry"] if row["codec"] == codec and row["log_strength"] is not None]
        if not rows:
            continue
        xs = [row["mean_bpp"] + dodge for row in rows]
        ys = [row["log_strength"] for row in rows]
        # a percentile interval need not contain the estimate; the bar then ends at the point
        err = [[max(0.0, y - (row["ci_low"] if row["ci_low"] is not None else y)) for y, row in zip(ys, rows)],
               [max(0.0, (row["ci_high"] if row["ci_high"] is not None else y) - y) for y, row in zip(ys, rows)]]
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=name(codec))
    ax.axhline(0, color="grey", lw=1, ls="--")
    ax.set_xlabel("bits per pixel (mean over images; series offset by 0.006 to stay apart)")
    ax.set_ylabel(f"Bradley-Terry log strength vs {name(result['anchor'])}")
    ax.set_title("Bradley-Terry scale per target rate (95% bootstrap CI over raters)", fontsize=10)
    scale = _finish(fig, ax, out / "bradley_terry.png")
    return [preference, scale]


def _finish(fig, ax, path: Path) -> Path:
    """Legend, grid, layout; write ``path`` and close the figure."""
    import matplotlib.pyplot as plt

    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def format_table(result: dict[str, Any], labels: dict[str, str] | None = None) -> list[str]:
    """Plain-text lines of the per-pair preferences (what the CLI prints)."""
    labels = labels or {}
    r = result["raters"]
    lines = [f"raters: {r['total']} ({r['kept']} kept, {r['excluded']} excluded by attention checks, "
             f"{r['without_attention_check']} without an attention check); votes counted: "
             f"{result['votes']['counted']} (excluded: {result['votes']['excluded']})"]
    for row in result["pairs"]:
        if not row["n"]:
            continue
        lines.append(
            f"{row['target_bpp']:.2f} bpp  {labels.get(row['codec_a'], row['codec_a'])} vs "
            f"{labels.get(row['codec_b'], row['codec_b'])}: {100 * row['pref_a']:.1f}% "
            f"[{100 * row['ci_low']:.1f}, {100 * row['ci_high']:.1f}] of {row['n']} votes")
    return lines


def labels_of(study: Study) -> dict[str, str]:
    """Codec name -> label from the definition."""
    return {name: d.get("label") or name for name, d in study.definition["codecs"].items()}


def check_min_attention(value: float) -> float:
    if not 0 <= value <= 1:
        raise ImgcompError(f"--min-attention must be in [0, 1], got {value:g}")
    return value


__all__ = ["analyze_votes", "bradley_terry", "default_anchor", "wilson_interval", "write_outputs"]
