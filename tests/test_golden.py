"""Files written by released versions keep decoding, and the encoder still codes what 0.5.0 coded.

``fixtures/golden/*.icz`` were written by imgcomp 0.2.0-0.5.0 (container versions 2 and 3) with
every model each release shipped; ``golden.json`` holds the SHA-256 of the pixels that same
release decoded (make_golden.py). ``identity-0.5.0.json`` holds, for 54 encoder cases, what
0.5.0 coded split into its two range-coded streams: the system's (K' and the wavefront-coded
symbols) and the low-pass layer's (make_identity.py). Container v4 stores exactly those two
streams as its two sections, so their bytes must match; the header differs (v4 carries the system
id, stream version and section table), so whole files are not compared.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from imgcomp import container
from imgcomp.api import decode_image, encode_image
from imgcomp.io import load_image
from imgcomp.postfilter.lowpass import AUTO, DEFAULT_LOWPASS, LowpassSettings
from imgcomp.zoo import get_model

GOLDEN = Path(__file__).parent / "fixtures" / "golden"
FILES = json.loads((GOLDEN / "golden.json").read_text())["files"]
CASES = json.loads((GOLDEN / "identity-0.5.0.json").read_text())["cases"]
LOWPASS = {"auto": AUTO, "none": None, "b32s4": DEFAULT_LOWPASS, "b16s2": LowpassSettings(16, 2)}


def _sha(data) -> str:
    return hashlib.sha256(bytes(data)).hexdigest()


@functools.lru_cache(maxsize=1)
def _images() -> dict[str, np.ndarray]:
    import skimage.data

    demo = load_image(Path(__file__).parents[1] / "src" / "imgcomp" / "assets" / "demo.png")
    return {
        "demo96x64": np.ascontiguousarray(demo[180:244, 300:396]),
        "coffee123x77": np.ascontiguousarray(skimage.data.coffee()[150:227, 200:323]),
    }


def test_fixtures_cover_every_release_and_shipped_model() -> None:
    versions = {(row["version"], row["model"]) for row in FILES}
    assert {v for v, _ in versions} == {"0.2.0", "0.3.0", "0.4.0", "0.5.0"}
    assert ("0.5.0", "mentzer2018-cpu-colour-lp") in versions and ("0.2.0", "mentzer2018-cpu") in versions
    assert sum((GOLDEN / row["file"]).stat().st_size for row in FILES) < 100_000


@pytest.mark.parametrize("row", FILES, ids=[row["file"] for row in FILES])
def test_released_files_decode_to_the_same_pixels(row: dict) -> None:
    data = (GOLDEN / row["file"]).read_bytes()
    assert _sha(data) == row["file_sha256"]
    header, _ = container.unpack(data)
    assert header.version == (2 if row["version"] == "0.2.0" else 3)
    pixels = decode_image(data)  # the model is found by the file's tag
    assert list(pixels.shape) == row["decoded_shape"]
    assert _sha(np.ascontiguousarray(pixels).tobytes()) == row["decoded_sha256"]
    # the same with the model named as 0.5 named it (alias) and as it is named now
    assert _sha(decode_image(data, model=row["model"]).tobytes()) == row["decoded_sha256"]


def _param(case: dict):
    # the older models' low-pass cases take the default model's path (its cases cover the search
    # and the fixed settings); their streams are checked with no layer. The rest run with -m slow.
    slow = case["model"] != "mentzer2018-cpu-colour-lp" and case["lowpass"] != "none"
    name = f"{case['model']}-{case['image']}-q{case['quality']}-{case['lowpass']}"
    return pytest.param(case, id=name, marks=[pytest.mark.slow] if slow else [])


@pytest.mark.parametrize("case", [_param(case) for case in CASES])
def test_encoder_codes_what_0_5_coded(case: dict) -> None:
    pixels = _images()[case["image"]]
    loaded = get_model(case["model"])
    # 0.5 coded stream version 1 (float P); the default is now the exact version 2
    result = encode_image(pixels, case["quality"], loaded, lowpass=LOWPASS[case["lowpass"]], stream_version=1)
    header, sections = container.unpack(result.data)
    assert header.version == 4 and header.system_id == 1 and header.stream_version == 1
    assert _sha(sections[container.SECTION_SYSTEM]) == case["system_sha256"]
    if case["lowpass_sha256"] is None:
        assert container.SECTION_LOWPASS not in sections and result.lowpass is None
    else:
        assert _sha(sections[container.SECTION_LOWPASS]) == case["lowpass_sha256"]
        assert [result.lowpass.block, result.lowpass.step] == case["chosen"]
    assert _sha(decode_image(result.data).tobytes()) == case["decoded_sha256"]
    # 0.5 counted log2(4) bits for an absent low-pass layer's block-size code; v4 sends no section
    absent = 0.0 if case["lowpass_sha256"] else float(np.log2(4))
    assert result.estimated_bits == pytest.approx(case["estimated_bits"] - absent, rel=1e-9)
