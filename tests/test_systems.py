"""The system registry, model names, and learned codecs named by system and model."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from imgcomp.errors import ImgcompError
from imgcomp.systems import SYSTEM_IDS, available_systems, config_from_dict, get_system, system_for_id


def test_system_ids_are_frozen() -> None:
    assert SYSTEM_IDS == {"mentzer2018": 1, "patel2019": 2, "rippel2017": 3}  # never renumber
    assert available_systems() == ["mentzer2018", "patel2019", "rippel2017"]
    assert set(available_systems()) <= set(SYSTEM_IDS)


def test_systems_are_found_by_name_id_and_config() -> None:
    system = get_system("mentzer2018")
    assert system_for_id(1) is system and system.stream_version in system.readable_stream_versions
    config = config_from_dict(system.config_class().to_dict())
    assert type(config) is system.config_class
    with pytest.raises(ImgcompError, match="unknown system"):
        get_system("ballé2018")
    planned = [number for name, number in SYSTEM_IDS.items() if name not in available_systems()]
    for number in planned:
        with pytest.raises(ImgcompError, match="not implement"):
            system_for_id(number)
    with pytest.raises(ImgcompError, match="never written"):  # patel2019's models write mentzer2018 files
        system_for_id(2)
    with pytest.raises(ImgcompError, match="architecture"):
        config_from_dict({"channels": 3})


def test_shipped_models_are_named_by_system_with_0_5_aliases() -> None:
    from imgcomp.zoo import DEFAULT_MODEL, canonical_name, get_model, model_name, shipped_models

    assert DEFAULT_MODEL == "mentzer2018/cpu-mixed"
    assert sorted(shipped_models()) == [
        "mentzer2018/cpu", "mentzer2018/cpu-colour", "mentzer2018/cpu-colour-lp", "mentzer2018/cpu-mixed", "patel2019/dpc",
        "rippel2017/cpu-lp"]
    assert canonical_name("mentzer2018-cpu-colour-lp") == "mentzer2018/cpu-colour-lp"  # 0.5's name of 0.5's default
    assert model_name(get_model()) == DEFAULT_MODEL and get_model().system.name == "mentzer2018"


def test_codecs_command_lists_every_codec_one_per_line() -> None:
    from imgcomp.cli import _register_commands, app

    _register_commands()
    result = CliRunner().invoke(app, ["codecs"])
    assert result.exit_code == 0
    names = result.output.split()
    assert {"jpeg420", "webp", "mentzer2018/cpu-colour-lp", "mentzer2018/cpu-colour-lp+refine20", "mentzer2018/cpu"} <= set(names)
    assert "imgcomp" not in names  # the deprecated alias still works but is not listed
    result = CliRunner().invoke(app, ["codecs", "--json"])
    rows = {row["name"]: row for row in map(json.loads, result.output.splitlines())}
    learned = rows["mentzer2018/cpu-colour-lp"]
    assert learned["system"] == "mentzer2018" and learned["qualities"] == [1, 2, 3, 4, 5]
    assert "imgcomp 0.5" in learned["library"] and rows["jpeg420"]["system"] is None


def test_deprecated_codec_names_are_the_default_model_of_0_5() -> None:
    from imgcomp.codecs import get_codec

    aliased, named = get_codec("imgcomp"), get_codec("mentzer2018/cpu-colour-lp")
    assert aliased.model_name == named.model_name and aliased.model.weights_sha256 == named.model.weights_sha256
    assert get_codec("imgcomp-refine").refine_steps == 20
