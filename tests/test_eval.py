"""Evaluation harness: BD-rate, curve averaging, size at quality, runner (resume), report, CLI."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from synthetic_images import smooth_image

from imgcomp.errors import ImgcompError
from imgcomp.eval import (
    EvalRecord,
    ResultsFile,
    average_curve,
    bd_rate_percent,
    evaluate_folder,
    load_results,
    rd_curve,
    relative_sizes,
    save_results,
    size_at_quality,
)
from imgcomp.eval.compare import write_comparison
from imgcomp.eval.report import REPORT_FILES, build_report, merge_results, write_report
from imgcomp.eval.runner import _exclusive_lock, parse_settings_option
from imgcomp.metrics import ms_ssim_db

IMGCOMP = Path(sys.executable).with_name("imgcomp")
QUICK = {"jpeg420": [10, 50, 90], "webp": [10, 60, 95]}


# --- BD-rate -----------------------------------------------------------------------------------


def test_bd_rate_of_a_scaled_curve_is_the_scale():
    rates = [0.1, 0.2, 0.4, 0.8, 1.6]
    psnr = [28.0, 31.0, 34.0, 37.0, 40.0]
    value, _ = bd_rate_percent(rates, psnr, [r * 0.8 for r in rates], psnr)
    assert value == pytest.approx(-20.0, abs=1e-9)
    value, _ = bd_rate_percent(rates, psnr, [r * 1.25 for r in rates], psnr)
    assert value == pytest.approx(25.0, abs=1e-9)


def test_bd_rate_without_overlap_is_excluded_with_a_reason():
    value, reason = bd_rate_percent([0.1, 0.2], [20.0, 22.0], [0.1, 0.2], [30.0, 32.0])
    assert value is None and "overlap" in reason


def _record(image, codec, setting, bpp, psnr, ms_ssim, size=768 * 512):
    return EvalRecord(
        image=image,
        image_sha256="0" * 64,
        width=768,
        height=512,
        codec=codec,
        library="test 1.0",
        setting=setting,
        bytes=round(bpp * size / 8),
        bpp=bpp,
        payload_bytes=None,
        payload_bpp=None,
        psnr=psnr,
        ms_ssim=ms_ssim,
        ms_ssim_ycbcr=ms_ssim,
        encode_seconds=0.01,
        decode_seconds=0.002,
    )


def _write_results(path: Path, records: list[EvalRecord], images=("a.png", "b.png")) -> Path:
    codecs = sorted({r.codec for r in records})
    config = {
        "images": {name: "0" * 64 for name in images},
        "codecs": {
            c: {"label": c.upper(), "library": "test 1.0", "settings": [], "parameters": {}} for c in codecs
        },
    }
    save_results(path, ResultsFile(config=config, records=records))
    return path


def _scaled_pair(scale: float) -> list[EvalRecord]:
    """Anchor 'ref' and codec 'new' that needs ``scale`` times the bits for the same quality."""
    records = []
    ms_values = [0.90, 0.94, 0.965, 0.98, 0.99]
    for image, offset in (("a.png", 0.0), ("b.png", 0.05)):
        for i, (bpp, quality) in enumerate(zip([0.1, 0.2, 0.4, 0.8, 1.6], ms_values)):
            psnr = 28.0 + 3 * i + offset
            records.append(_record(image, "ref", i, bpp, psnr, quality))
            records.append(_record(image, "new", i, bpp * scale, psnr, quality))
    return records


def test_report_bd_rates_in_ms_ssim_db_and_psnr(tmp_path):
    path = _write_results(tmp_path / "r.json", _scaled_pair(0.8))
    report = build_report(merge_results([path]), "ref")
    for metric in ("ms_ssim_db", "psnr", "ms_ssim_ycbcr_db"):
        result = report.bd_rates[metric]["new"]
        assert result.mean == pytest.approx(-20.0, abs=1e-6), metric
        assert sorted(result.per_image) == ["a.png", "b.png"]
    # the MS-SSIM path works in dB, which does not change a pure rate scaling but must be finite
    assert ms_ssim_db(0.99) == pytest.approx(20.0)


def test_report_compares_a_single_rate_codec_at_its_own_operating_point(tmp_path):
    records = [r for r in _scaled_pair(1.0) if r.codec == "ref"]
    # 'one' reaches the reference's third point (MS-SSIM 0.965) with 80% of the bytes
    records += [_record(image, "one", 5, 0.4 * 0.8, 30.0, 0.965) for image in ("a.png", "b.png")]
    report = build_report(merge_results([_write_results(tmp_path / "r.json", records)]), "ref")
    assert report.bd_rates["ms_ssim_db"]["one"].mean is None  # one point: no BD-rate
    (row,) = report.operating_points["one"]
    assert row.setting == 5 and row.mean_bpp == pytest.approx(0.32)
    assert row.relative_size == pytest.approx(0.8, rel=1e-3) and row.size_images == 2
    # at 0.32 bpp the reference lies between its 0.94 and 0.965 points: 'one' is better there
    assert row.quality_gain > 0 and row.gain_images == 2
    assert "Operating points against REF" in report.to_markdown()
    assert "ref" not in report.operating_points  # the reference is not compared with itself


# --- interpolation and averaging ---------------------------------------------------------------


def test_average_curve_uses_only_images_covering_each_grid_point():
    first = rd_curve([0.1, 0.5], [10.0, 20.0])
    second = rd_curve([0.3, 1.0], [30.0, 44.0])
    grid = np.array([0.05, 0.2, 0.4, 0.8, 1.5])
    average = average_curve([first, second], grid, min_coverage=0.5)
    # 0.05 and 1.5 lie outside both ranges: dropped, never extrapolated
    assert list(average.bpp) == [0.2, 0.4, 0.8]
    assert list(average.count) == [1, 2, 1]
    assert average.mean[0] == pytest.approx(12.5)  # only the first image covers 0.2
    assert average.mean[1] == pytest.approx((17.5 + 32.0) / 2)
    assert average.mean[2] == pytest.approx(40.0)  # only the second image covers 0.8


def test_average_curve_drops_points_covered_by_too_few_images():
    curves = [
        rd_curve([0.1, 0.5], [1.0, 2.0]),
        rd_curve([0.1, 0.5], [3.0, 4.0]),
        rd_curve([0.4, 2.0], [5.0, 6.0]),
    ]
    average = average_curve(curves, np.array([0.2, 0.45, 1.0]), min_coverage=0.5)
    # 0.2: two of three images (kept); 0.45: all three; 1.0: one of three (< half: dropped)
    assert list(average.bpp) == [0.2, 0.45]
    assert list(average.count) == [2, 3]


def test_rd_curve_drops_missing_values_and_duplicate_rates():
    curve = rd_curve([0.3, 0.1, 0.3, 0.2], [5.0, 1.0, 6.0, None])
    assert list(curve.bpp) == [0.1, 0.3] and list(curve.values) == [1.0, 6.0]


def test_size_at_quality_interpolates_without_extrapolating():
    sizes, quality = [1000, 2000, 4000], [0.90, 0.95, 0.98]
    assert size_at_quality(sizes, quality, 0.95) == pytest.approx(2000)
    assert 2000 < size_at_quality(sizes, quality, 0.97) < 4000
    assert size_at_quality(sizes, quality, 0.99) is None
    reference = {"a": (sizes, quality)}
    test = {"a": ([s * 0.8 for s in sizes], quality)}
    cells = relative_sizes(reference, test, [0.93, 0.99])
    assert cells[0].relative == pytest.approx(0.8) and cells[0].images == 1
    assert cells[1].relative is None


# --- runner, resume, report, compare -------------------------------------------------------------


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    for seed in range(3):
        Image.fromarray(smooth_image(192, 192, seed=seed, noise=6.0)).save(folder / f"img{seed}.png")
    return folder


@pytest.fixture(scope="module")
def results_path(image_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("results") / "results.json"
    summary = evaluate_folder(image_dir, out, ["jpeg420", "webp"], settings=QUICK, jobs=1)
    assert summary.computed == 3 * 6 and summary.skipped == 0
    return out


def test_runner_writes_every_measurement(results_path):
    results = load_results(results_path)
    assert len(results.records) == 18
    assert set(results.config["images"]) == {"img0.png", "img1.png", "img2.png"}
    record = results.records[0]
    assert record.bytes > 0 and record.bpp == pytest.approx(8 * record.bytes / 192**2)
    assert 0 < record.payload_bytes < record.bytes
    assert 0 < record.ms_ssim <= 1 and 0 < record.ms_ssim_ycbcr <= 1 and record.psnr > 20
    assert record.encode_seconds > 0 and record.decode_seconds > 0
    assert (
        len(record.image_sha256) == 64 and "libjpeg-turbo" in results.config["codecs"]["jpeg420"]["library"]
    )
    assert json.loads(results_path.read_text())["runs"][0]["finished"] is True


def test_runner_resumes_and_computes_nothing_new(image_dir, results_path, tmp_path):
    again = evaluate_folder(image_dir, results_path, ["jpeg420", "webp"], settings=QUICK, jobs=1)
    assert again.computed == 0 and again.skipped == 18
    # an interrupted run: drop some records and resume into a copy
    partial = tmp_path / "partial.json"
    results = load_results(results_path)
    results.records = [r for r in results.records if not (r.codec == "webp" and r.image == "img1.png")]
    save_results(partial, results)
    resumed = evaluate_folder(image_dir, partial, ["jpeg420", "webp"], settings=QUICK, jobs=1)
    assert resumed.computed == 3 and resumed.skipped == 15
    assert len(load_results(partial).records) == 18


def test_runner_refuses_a_different_configuration_without_force(image_dir, results_path, tmp_path):
    copy = tmp_path / "copy.json"
    copy.write_bytes(results_path.read_bytes())
    with pytest.raises(ImgcompError, match="different run"):
        evaluate_folder(image_dir, copy, ["jpeg420"], settings={"jpeg420": [10, 50]}, jobs=1)
    assert copy.read_bytes() == results_path.read_bytes()
    summary = evaluate_folder(image_dir, copy, ["jpeg420"], settings={"jpeg420": [50]}, jobs=1, force=True)
    assert summary.computed == 3 and len(load_results(copy).records) == 3


def test_runner_refuses_a_file_another_run_is_writing(image_dir, tmp_path):
    out = tmp_path / "busy.json"
    with _exclusive_lock(out):
        with pytest.raises(ImgcompError, match="another 'imgcomp eval'"):
            evaluate_folder(image_dir, out, ["jpeg420"], settings={"jpeg420": [50]}, jobs=1)
    assert not out.exists()


def test_runner_refuses_a_file_that_is_not_results(image_dir, tmp_path):
    other = tmp_path / "notes.json"
    other.write_text("not json")
    with pytest.raises(ImgcompError, match="--force"):
        evaluate_folder(image_dir, other, ["jpeg420"], settings={"jpeg420": [50]}, jobs=1)
    assert other.read_text() == "not json"


def test_runner_with_worker_processes(image_dir, tmp_path):
    out = tmp_path / "parallel.json"
    summary = evaluate_folder(image_dir, out, ["jpeg420"], settings={"jpeg420": [30, 70]}, jobs=2)
    assert summary.computed == 6 and len(load_results(out).records) == 6


def test_runner_bad_inputs(tmp_path):
    with pytest.raises(ImgcompError, match="no such folder"):
        evaluate_folder(tmp_path / "missing", tmp_path / "r.json", ["jpeg420"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImgcompError, match="no PNG or JPEG images"):
        evaluate_folder(tmp_path / "empty", tmp_path / "r.json", ["jpeg420"])
    with pytest.raises(ImgcompError, match="unknown codec"):
        evaluate_folder(tmp_path / "empty", tmp_path / "r.json", ["jpeg42"])
    with pytest.raises(ImgcompError, match="is a folder"):
        evaluate_folder(tmp_path / "empty", tmp_path / "empty", ["jpeg420"])
    assert not (tmp_path / "r.json").exists()


def test_small_images_get_null_ms_ssim_with_a_warning(tmp_path):
    (tmp_path / "small").mkdir()
    Image.fromarray(smooth_image(40, 64)).save(tmp_path / "small" / "tiny.png")
    with pytest.warns(UserWarning, match="MS-SSIM recorded as null"):
        evaluate_folder(
            tmp_path / "small", tmp_path / "r.json", ["jpeg420"], settings={"jpeg420": [50]}, jobs=1
        )
    (record,) = load_results(tmp_path / "r.json").records
    assert record.ms_ssim is None and record.ms_ssim_ycbcr is None and record.psnr > 20
    # a report still works: PSNR curves, MS-SSIM marked as unavailable
    report = build_report(merge_results([tmp_path / "r.json"]), "jpeg420")
    assert any("MS-SSIM not available" in note for note in report.notes)
    write_report(report, tmp_path / "report")
    assert (tmp_path / "report" / "rd_ms_ssim.png").exists()


def test_report_writes_its_files(results_path, tmp_path):
    report = build_report(merge_results([results_path]), "jpeg420")
    written = write_report(report, tmp_path / "report")
    assert sorted(p.name for p in written) == sorted(REPORT_FILES)
    for path in written:
        assert path.stat().st_size > 0
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "BD-rate against JPEG 4:2:0" in markdown and "| WebP |" in markdown
    numbers = json.loads((tmp_path / "report" / "report.json").read_text())
    bd = numbers["bd_rate"]["ms_ssim_db"]["webp"]
    assert bd["images"] + len(bd["excluded"]) == 3
    assert (tmp_path / "report" / "rd_psnr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ImgcompError, match="exists"):
        write_report(report, tmp_path / "report")
    write_report(report, tmp_path / "report", force=True)


def test_report_refuses_conflicting_inputs(results_path, tmp_path):
    with pytest.raises(ImgcompError, match="in both"):
        merge_results([results_path, results_path])
    with pytest.raises(ImgcompError, match="not among the results"):
        merge_results([results_path], {"elsewhere.json": "x"})


def test_tags_compare_two_runs_of_one_codec(results_path, tmp_path):
    """``--tag FILE=TAG`` renames one file's codecs, so a run can be the reference of another run
    of the same codec: against itself its BD-rate is zero."""
    import shutil

    from typer.testing import CliRunner

    from imgcomp.cli import _register_commands, app

    copy = tmp_path / "copy.json"
    shutil.copy(results_path, copy)
    merged = merge_results([results_path, copy], {str(copy): "old"})
    assert "jpeg420@old" in merged.codecs and "jpeg420" in merged.codecs
    assert merged.codecs["jpeg420@old"]["label"].endswith("[old]")
    report = build_report(merged, "jpeg420@old")
    assert report.bd_rates["ms_ssim_db"]["jpeg420"].mean == pytest.approx(0.0, abs=1e-6)
    _register_commands()
    result = CliRunner().invoke(app, ["report", str(results_path), str(copy), "--tag", f"{copy}=old", "--ref", "jpeg420@old", "--out", str(tmp_path / "rep")])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(app, ["report", str(results_path), "--tag", "old", "--out", str(tmp_path / "rep2")])
    assert result.exit_code != 0 and "FILE=TAG" in str(result.exception)
    with pytest.raises(ImgcompError, match="reference codec"):
        build_report(merge_results([results_path]), "avif444")
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(ImgcompError, match="not a readable results JSON"):
        merge_results([broken])


def test_compare_figure(image_dir, tmp_path):
    out = tmp_path / "compare.png"
    chosen = write_comparison(image_dir / "img0.png", 0.5, out, ["jpeg420", "jpeg2000"], "10,20,96,64")
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert [r.codec for r in chosen] == ["jpeg420", "jpeg2000"]
    assert chosen[1].bpp == pytest.approx(0.5, rel=0.1)  # JPEG 2000's sweep targets the rate itself
    assert all(math.isfinite(r.psnr) and r.ms_ssim is not None for r in chosen)
    with pytest.raises(ImgcompError, match="exists"):
        write_comparison(image_dir / "img0.png", 0.5, out, ["jpeg420"])
    with pytest.raises(ImgcompError, match="crop"):
        write_comparison(image_dir / "img0.png", 0.5, tmp_path / "c2.png", ["jpeg420"], "0,0,500,10")


def test_settings_option_parsing():
    assert parse_settings_option(["jpeg420=10,50", "jpegxl=1.5, 3"]) == {
        "jpeg420": [10, 50],
        "jpegxl": [1.5, 3],
    }
    with pytest.raises(ImgcompError):
        parse_settings_option(["jpeg420"])
    with pytest.raises(ImgcompError):
        parse_settings_option(["jpeg420=a,b"])


# --- command line ------------------------------------------------------------------------------


def _imgcomp(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    # a wide terminal: rich wraps long messages at 80 columns when stderr is not a terminal
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [str(IMGCOMP), *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=120
    )


def test_cli_unknown_codec_is_a_one_line_error(image_dir, tmp_path):
    result = _imgcomp("eval", str(image_dir), "--codecs", "jpeg420,jpeg9000", "--out", "r.json", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown codec 'jpeg9000'" in lines[0]
    assert not (tmp_path / "r.json").exists()


def test_cli_report_on_unreadable_results(tmp_path):
    (tmp_path / "bad.json").write_text("[1, 2")
    result = _imgcomp("report", "bad.json", "--out", "rep", cwd=tmp_path)
    assert result.returncode == 2
    assert "not a readable results JSON" in result.stderr
    assert not (tmp_path / "rep").exists()
