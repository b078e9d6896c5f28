"""Downstream OCR: scoring (IoU, matching, F1, CER) on hand-made cases, the text-scene generator's
determinism and errors, and real PP-OCRv4 runs on small rendered images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgcomp.data.text_scenes import (
    FONT_PACKAGE,
    _Fonts,
    _text_box,
    find_font,
    generate_text_scenes,
    load_ground_truth,
)
from imgcomp.errors import ImgcompError
from imgcomp.eval.downstream_ocr import (
    ORIGINAL,
    Counts,
    at_rate,
    curves,
    iou,
    match_boxes,
    merge_split_lines,
    score_image,
    summarise,
    table_markdown,
)


def test_iou_of_known_boxes():
    assert iou([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0
    assert iou([0, 0, 10, 10], [10, 0, 20, 10]) == 0.0  # touching edges share no area
    assert iou([0, 0, 2, 1], [1, 0, 3, 1]) == pytest.approx(1 / 3)
    assert iou([0, 0, 4, 4], [1, 1, 3, 3]) == pytest.approx(4 / 16)
    assert iou([0, 0, 0, 5], [0, 0, 0, 5]) == 0.0  # empty boxes


def test_matching_is_one_to_one_and_respects_the_threshold():
    truth = [[0, 0, 10, 10], [20, 0, 30, 10]]
    # IoU exactly 0.5 counts; a box overlapping both lines is matched to one at most
    assert match_boxes(truth, [[0, 0, 10, 5]]) == [(0, 0)]
    assert match_boxes(truth, [[0, 0, 10, 4.9]]) == []
    assert match_boxes(truth, [[0, 0, 10, 10], [0, 0, 10, 9]]) in ([(0, 0)], [(0, 1)])
    assert len(match_boxes(truth, [[0, 0, 10, 10], [0, 0, 10, 9]])) == 1
    # the assignment maximises the summed IoU: 0.9 + 0.85 rather than 0.69 + 0.5
    truth = [[0, 0, 10, 10], [2, 0, 14, 10]]
    predicted = [[1, 0, 13, 10], [0, 0, 9, 10]]
    assert sorted(match_boxes(truth, predicted)) == [(0, 1), (1, 0)]
    assert match_boxes([], predicted) == [] and match_boxes(truth, []) == []


def test_f1_and_both_character_error_rates_on_a_known_case():
    truth = [{"text": "Exit 42", "box": [0, 0, 100, 20]}, {"text": "Room 7", "box": [0, 50, 80, 70]}]
    predicted = [
        {"text": "Exit4Z", "box": [1, 1, 99, 21]},  # found, one character wrong, space dropped
        {"text": "noise", "box": [200, 200, 260, 220]},  # a false positive
    ]  # "Room 7" is missed
    counts = score_image(truth, predicted)
    assert (counts.truth, counts.predicted, counts.matched) == (2, 2, 1)
    assert counts.precision == 0.5 and counts.recall == 0.5 and counts.f1 == 0.5
    assert counts.cer_matched == pytest.approx(1 / 6)  # "Exit42" vs "Exit4Z"
    assert counts.cer_end_to_end == pytest.approx((1 + 5) / (6 + 5))  # the missed "Room7": 5 errors
    perfect = score_image(truth, [dict(t) for t in truth])
    assert perfect.f1 == 1.0 and perfect.cer_end_to_end == 0.0
    nothing = score_image(truth, [])
    assert nothing.f1 == 0.0 and nothing.cer_end_to_end == 1.0 and nothing.cer_matched is None
    assert Counts().f1 == 1.0  # nothing to find, nothing found
    pooled = counts + perfect
    assert pooled.matched == 3 and pooled.truth == 4 and pooled.f1 == pytest.approx(6 / 8)


def test_split_lines_are_joined_before_matching():
    truth = [{"text": "Old Town Open", "box": [0, 0, 300, 40]}]
    pieces = [{"text": "Open", "box": [210, 0, 300, 40]}, {"text": "Old Town", "box": [0, 0, 190, 40]}]
    merged = merge_split_lines(truth, pieces)
    assert merged == [{"text": "Old Town Open", "box": [0, 0, 300, 40]}]  # reading order, union box
    counts = score_image(truth, pieces)
    assert counts.predicted == 1 and counts.matched == 1 and counts.cer_end_to_end == 0.0
    # pieces whose union still misses the line (IoU < 0.5), and boxes outside every line, stay apart
    small = [{"text": "Old", "box": [0, 0, 60, 40]}, {"text": "Town", "box": [70, 0, 130, 40]}]
    assert merge_split_lines(truth, small) == small
    elsewhere = [{"text": "x", "box": [400, 0, 420, 40]}, {"text": "y", "box": [430, 0, 450, 40]}]
    assert merge_split_lines(truth, elsewhere) == elsewhere
    assert score_image(truth, small).matched == 0


def _document(points):
    """A results document: ``points`` maps (codec, setting) -> per-image (bpp, truth, predicted, matched)."""
    records = []
    for (codec, setting), per_image in points.items():
        for image, (bpp, truth, predicted, matched) in zip(("a.png", "b.png"), per_image):
            records.append({"image": image, "codec": codec, "setting": setting, "bpp": bpp, "truth": truth,
                            "predicted": predicted, "matched": matched, "truth_chars": 10 * truth,
                            "matched_truth_chars": 10 * matched, "matched_errors": 0,
                            "end_to_end_errors": 10 * (truth - matched)})
    return {"config": {"images": {"a.png": "x", "b.png": "y"}, "codecs": {"c": {"label": "Codec C"}}},
            "records": records}


def test_curves_pool_over_images_and_the_table_interpolates_without_extrapolating():
    document = _document({
        (ORIGINAL, None): [(24.0, 10, 10, 10), (24.0, 10, 10, 10)],
        ("c", 1): [(0.1, 10, 10, 4), (0.3, 10, 10, 6)],  # mean bpp 0.2, F1 0.5
        ("c", 2): [(0.3, 10, 10, 8), (0.5, 10, 10, 6)],  # mean bpp 0.4, F1 0.7
        ("c", 3): [(0.9, 10, 10, 10)],  # measured on one image only: left out
    })
    points = curves(document)["c"]
    assert [p["setting"] for p in points] == [1, 2]
    assert [p["bpp"] for p in points] == pytest.approx([0.2, 0.4])
    assert [p["f1"] for p in points] == pytest.approx([0.5, 0.7])
    assert [p["cer"] for p in points] == pytest.approx([0.5, 0.3])
    assert at_rate(points, "f1", 0.3) == pytest.approx(0.6)
    assert at_rate(points, "f1", 0.2) == pytest.approx(0.5)
    assert at_rate(points, "f1", 0.19) is None and at_rate(points, "f1", 0.41) is None
    summary = summarise(document, [0.3, 1.0])
    assert summary["original"]["f1"] == 1.0 and summary["truth_lines"] == 20
    assert summary["table"]["c"]["f1"] == {"0.3": pytest.approx(0.6), "1.0": None}
    table = table_markdown(summary)
    assert "| Codec C | 0.20-0.40 | 0.600 | n/a | 40.0% | n/a |" in table
    assert "original (ceiling)" in table


def _backgrounds(folder: Path, count: int = 3) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(5)
    for index in range(count):
        pixels = rng.integers(0, 256, size=(180, 260, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"photo-{index}.png")
    return folder


def test_text_scenes_are_deterministic_with_ground_truth_inside_the_image(tmp_path):
    backgrounds = _backgrounds(tmp_path / "bg")
    first = generate_text_scenes(backgrounds, tmp_path / "a", count=2, width=320, height=240, seed=3)
    generate_text_scenes(backgrounds, tmp_path / "b", count=2, width=320, height=240, seed=3)
    generate_text_scenes(backgrounds, tmp_path / "c", count=2, width=320, height=240, seed=4)
    assert first.lines > 0
    for name in ("text-00.png", "text-00.json", "text-01.png", "text-01.json", "scenes.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert (tmp_path / "a" / "text-00.png").read_bytes() != (tmp_path / "c" / "text-00.png").read_bytes()
    truth = json.loads((tmp_path / "a" / "text-00.json").read_text())
    assert truth["width"] == 320 and truth["background"]["file"].startswith("photo-")
    for line in truth["lines"]:
        x0, y0, x1, y1 = line["box"]
        assert 0 <= x0 < x1 <= 320 and 0 <= y0 < y1 <= 240
        assert line["text"].strip() and " ".join(w["text"] for w in line["words"]) == line["text"]
    assert load_ground_truth(tmp_path / "a" / "text-00.png")[0]["text"] == truth["lines"][0]["text"]
    with pytest.raises(ImgcompError, match="exists"):
        generate_text_scenes(backgrounds, tmp_path / "a", count=2, width=320, height=240, seed=3)
    with pytest.raises(ImgcompError, match="usable photos"):
        generate_text_scenes(backgrounds, tmp_path / "d", count=4, width=320, height=240)


def test_a_missing_font_or_ground_truth_is_a_clear_error(tmp_path):
    with pytest.raises(ImgcompError, match=FONT_PACKAGE):
        find_font("sans", [tmp_path])
    with pytest.raises(ImgcompError, match=FONT_PACKAGE):
        generate_text_scenes(_backgrounds(tmp_path / "bg"), tmp_path / "out", count=1, font_dirs=[tmp_path])
    assert not (tmp_path / "out").exists()
    Image.new("RGB", (32, 32)).save(tmp_path / "bare.png")
    with pytest.raises(ImgcompError, match="no ground truth bare.json"):
        load_ground_truth(tmp_path / "bare.png")
    (tmp_path / "bare.json").write_text('{"lines": [{"text": "a", "box": [5, 5, 1, 9]}]}')
    with pytest.raises(ImgcompError, match="is not"):
        load_ground_truth(tmp_path / "bare.png")


def _rendered_word(folder: Path, text: str = "Harbour 42") -> Path:
    """A plain image with one line of text and its ground truth, as the generator writes them."""
    from PIL import ImageDraw

    font = _Fonts([Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts")]).get("sans-bold", 30)
    image = Image.new("RGB", (320, 96), (236, 228, 200))
    ImageDraw.Draw(image).text((24, 62), text, font=font, fill=(20, 30, 60), anchor="ls")
    folder.mkdir(exist_ok=True)
    image.save(folder / "word.png")
    truth = {"lines": [{"text": text, "box": _text_box(font, text, 24, 62)}]}
    (folder / "word.json").write_text(json.dumps(truth))
    return folder / "word.png"


def test_pp_ocr_reads_a_rendered_word(tmp_path):
    pytest.importorskip("rapidocr_onnxruntime", reason="the ocr extra (rapidocr-onnxruntime) is not installed")
    from imgcomp.eval.downstream_ocr import _engine
    from imgcomp.io import load_image

    path = _rendered_word(tmp_path)
    found = _engine().read(load_image(path))
    counts = score_image(load_ground_truth(path), found)
    assert counts.f1 == 1.0, found
    assert counts.cer_end_to_end == 0.0, found
    assert score_image([{"text": "Station 7", "box": [0, 0, 50, 20]}], found).f1 == 0.0


def test_evaluate_ocr_runs_a_codec_resumes_and_refuses_another_run(tmp_path):
    pytest.importorskip("rapidocr_onnxruntime", reason="the ocr extra (rapidocr-onnxruntime) is not installed")
    from typer.testing import CliRunner

    from imgcomp.cli import _register_commands, app
    from imgcomp.eval.downstream_ocr import evaluate_ocr

    _rendered_word(tmp_path / "scenes")
    out = tmp_path / "ocr.json"
    document = evaluate_ocr(tmp_path / "scenes", out, ["jpeg420"], settings={"jpeg420": [1, 90]})
    by_setting = {r["setting"]: r for r in document["records"]}
    assert set(by_setting) == {None, 1, 90}
    assert by_setting[None]["codec"] == ORIGINAL and by_setting[None]["matched"] == 1
    assert by_setting[90]["matched"] == 1 and by_setting[90]["end_to_end_errors"] == 0
    assert by_setting[1]["bpp"] < by_setting[90]["bpp"]
    again = evaluate_ocr(tmp_path / "scenes", out, ["jpeg420"], settings={"jpeg420": [1, 90]})
    assert len(again["records"]) == 3 and len(again["runs"]) == 1  # nothing recomputed
    with pytest.raises(ImgcompError, match="different run"):
        evaluate_ocr(tmp_path / "scenes", out, ["jpeg420"], settings={"jpeg420": [2, 90]})

    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "results.json").write_bytes(out.read_bytes())  # resumed: no OCR to run
    _register_commands()
    result = CliRunner().invoke(app, ["downstream", "ocr", str(tmp_path / "scenes"), "--out", str(tmp_path / "report"),
                                      "--codecs", "jpeg420", "--settings", "jpeg420=1,90", "--rates", "0.5"])
    assert result.exit_code == 0, result.output
    assert "JPEG 4:2:0" in result.output and "original (ceiling)" in result.output
    assert {"results.json", "summary.json", "table.md", "f1_vs_bpp.png", "cer_vs_bpp.png"} <= {
        p.name for p in (tmp_path / "report").iterdir()}
    (tmp_path / "scenes" / "word.json").unlink()
    result = CliRunner().invoke(app, ["downstream", "ocr", str(tmp_path / "scenes"), "--out", str(tmp_path / "r2")])
    assert result.exit_code != 0 and "no ground truth" in str(result.exception)
    assert not (tmp_path / "r2").exists()
