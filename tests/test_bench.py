"""``imgcomp bench codec``: several learned models and classical codecs side by side on one image."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import imgcomp.benchmarks
from imgcomp.benchmarks import _round_robin, default_settings_for
from imgcomp.codecs import get_codec
from imgcomp.models import export_model
from imgcomp.systems import create_model
from imgcomp.systems.mentzer2018.config import preset as mentzer_preset
from imgcomp.systems.rippel2017 import stream
from imgcomp.systems.rippel2017.config import preset as rippel_preset
from imgcomp.systems.rippel2017.model import RippelCodec
from synthetic_images import smooth_image

HEIGHT, WIDTH = 96, 128


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    """A tiny Mentzer model, a tiny Rippel model (table counted on the image) and two images."""
    root = tmp_path_factory.mktemp("bench")
    pixels = smooth_image(HEIGHT, WIDTH, seed=4)
    Image.fromarray(pixels).save(root / "image.png")
    Image.fromarray(pixels[:32, :48]).save(root / "small.png")
    torch.manual_seed(0)
    export_model(create_model(mentzer_preset("tiny")).eval(), root / "mentzer")
    rippel = RippelCodec(rippel_preset("tiny")).eval()
    stream.count_table_on(rippel, pixels, range(1, rippel.config.qualities + 1))
    export_model(rippel, root / "rippel")
    return {"image": root / "image.png", "small": root / "small.png", "mentzer": root / "mentzer", "rippel": root / "rippel"}


def _app():
    from imgcomp.cli import _register_commands, app

    _register_commands(["bench"])
    return app


def _main(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """``imgcomp ARGS`` through the real entry point (its ImgcompError -> one line + exit 2)."""
    from imgcomp.cli import main

    monkeypatch.setattr(sys, "argv", ["imgcomp", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    return exit_.value.code, capsys.readouterr().err


def test_models_and_classical_codecs_side_by_side(setup, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(imgcomp.benchmarks, "import_torch_seconds", lambda: 1.5)  # 3 interpreter starts: slow, unchanged
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(_app(), [
        "bench", "codec", "--image", str(setup["image"]), "-m", str(setup["mentzer"]), "-m", str(setup["rippel"]),
        "-c", "webp,jpeg420", "--settings", "webp=10,90", "--runs", "1", "-o", str(out),
    ])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert json.loads(out.read_text()) == record
    assert {"machine", "image", "runs", "import_torch_process_s", "entries"} <= set(record)
    assert record["machine"]["cpu"] and record["runs"] == 1
    entries = record["entries"]
    assert [(e["name"], e["kind"]) for e in entries] == [
        (str(setup["mentzer"]), "learned"), (str(setup["rippel"]), "learned"), ("webp", "classical"), ("jpeg420", "classical"),
    ]
    mentzer, rippel, webp, jpeg = entries
    assert [row["quality"] for row in rippel["rows"]] == [1, 2] and len(mentzer["rows"]) >= 1
    assert [row["setting"] for row in webp["rows"]] == [10, 90] and webp["settings_from"] == "--settings"
    jpeg_settings = [row["setting"] for row in jpeg["rows"]]
    assert 1 < len(jpeg_settings) <= 5 and set(jpeg_settings) <= set(get_codec("jpeg420").default_settings)
    for entry in entries:
        for row in entry["rows"]:
            assert row["bytes"] > 0 and row["bpp"] == pytest.approx(8 * row["bytes"] / (HEIGHT * WIDTH))
            assert row["encode_s_median"] > 0 and row["decode_s_median"] > 0
    for entry in (mentzer, rippel):
        assert all(row["decode_process_s_median"] > 0 and row["header_bytes"] < row["bytes"] for row in entry["rows"])
    assert webp["rows"][0]["bytes"] < webp["rows"][1]["bytes"]
    assert "naive_one_symbol_at_a_time" in mentzer["system_benchmarks"]
    split = rippel["system_benchmarks"]["network_and_coder_split"]
    assert split["quality"] == 2 and (split["width"], split["height"]) == (WIDTH, HEIGHT)
    assert split["encode_s"] == pytest.approx(split["encode_network_s"] + split["encode_coder_s"])
    assert min(split["encode_network_s"], split["encode_coder_s"], split["decode_network_s"], split["decode_coder_s"],
               split["decode_network_numpy_s"]) > 0
    assert split["multiply_adds"]["encoder"] > 0 and split["multiply_adds"]["decoder"] > 0
    assert split["payload_bytes"] > 0
    table = result.stderr  # the side-by-side for a human: one line per codec and setting
    assert "encode ms" in table and "webp" in table and "quality 90" in table
    assert table.count("quality ") == sum(len(entry["rows"]) for entry in entries)


def test_one_model_keeps_the_record_of_a_single_model(setup, monkeypatch) -> None:
    monkeypatch.setattr(imgcomp.benchmarks, "import_torch_seconds", lambda: 1.5)
    result = CliRunner().invoke(_app(), ["bench", "codec", "--image", str(setup["small"]), "-m", str(setup["rippel"]), "--runs", "1"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert set(record) == {
        "machine", "image", "model", "system", "refine_steps", "qualities", "import_torch_process_s", "network_and_coder_split",
    }
    assert record["system"] == "rippel2017" and [row["quality"] for row in record["qualities"]] == [1, 2]


def test_rounds_interleave_every_timer_and_rotate() -> None:
    order: list[str] = []

    class Timer:
        def __init__(self, name: str) -> None:
            self.name = name

        def once(self) -> None:
            order.append(self.name)

    _round_robin([Timer("a"), Timer("b"), Timer("c")], runs=4)
    assert order == list("abc" "bca" "cab" "abc")


def test_default_settings_span_the_rate_range(setup) -> None:
    from imgcomp.io import load_image

    pixels = load_image(str(setup["image"]))
    codec = get_codec("webp")
    chosen = default_settings_for(codec, pixels)
    rates = [8 * len(codec.encode(pixels, s)) / (HEIGHT * WIDTH) for s in chosen]
    assert len(chosen) == 5 and set(chosen) <= set(codec.default_settings)
    assert rates == sorted(rates) and rates[0] < 0.2 and rates[-1] > 0.9
    assert default_settings_for(codec, pixels, count=20) == list(codec.default_settings)


@pytest.mark.parametrize("args, message", [
    (["-m", "nosuch/model"], "not found"),
    (["-c", "webp,nosuch"], "unknown codec 'nosuch'"),
    (["-c", "mentzer2018/cpu-colour-lp"], "learned codec"),
    (["-c", "webp", "--settings", "avif444=10"], "not one of --codecs"),
    (["-c", "webp", "--settings", "webp=ten"], "must be numbers"),
    (["-m", "mentzer2018/cpu", "-m", "mentzer2018-cpu"], "given twice"),
    (["--settings", "webp=10"], "not one of --codecs (none given)"),
])
def test_bad_names_are_one_line_and_exit_2(monkeypatch, capsys, args: list[str], message: str) -> None:
    def no_timing(*args, **kwargs):
        raise AssertionError("timed before checking the names")

    monkeypatch.setattr(imgcomp.benchmarks, "side_by_side", no_timing)
    monkeypatch.setattr(imgcomp.benchmarks, "codec_speed", no_timing)
    code, err = _main(monkeypatch, capsys, "bench", "codec", *args, "--runs", "1")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_existing_out_refused_before_any_timing(setup, monkeypatch, capsys, tmp_path: Path) -> None:
    def no_timing(*args, **kwargs):
        raise AssertionError("timed before refusing --out")

    monkeypatch.setattr(imgcomp.benchmarks, "side_by_side", no_timing)
    out = tmp_path / "bench.json"
    out.write_text("mine")
    code, err = _main(monkeypatch, capsys, "bench", "codec", "-m", str(setup["rippel"]), "-c", "webp", "-o", str(out))
    assert code == 2 and "--force" in err and "Traceback" not in err
    assert out.read_text() == "mine"


def test_naive_order_timing_of_an_image_with_few_symbols(setup) -> None:
    """Fewer latent symbols than the 400 it times: it times them all and extrapolates to as many."""
    from imgcomp.models import load_model
    from imgcomp.systems.mentzer2018.bench import naive_decode_seconds

    loaded = load_model(setup["mentzer"])
    result = naive_decode_seconds(str(setup["small"]), loaded)
    assert result["symbols"] == loaded.config.latent_channels * 4 * 6 < 400
    assert result["seconds_per_symbol"] > 0
    assert result["extrapolated_decode_s"] == pytest.approx(result["seconds_per_symbol"] * result["symbols"])
