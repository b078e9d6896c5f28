"""Models that ship inside the package, ``imgcomp/weights/<system>/<model>/``, and how files find them.

A shipped model is named ``<system>/<model>`` (``mentzer2018/cpu-colour-lp``); the names of
imgcomp 0.2-0.5 (``mentzer2018-cpu-colour-lp``) are accepted as aliases. ``<system>`` is the paper
the model comes from; the system that codes its files is its config's ``architecture`` (the
same, except for ``patel2019/dpc``: Patel et al.'s model is a ``mentzer2018`` network). Anywhere a model is
asked for, a folder holding an exported model works too. Names and tags are found without
importing torch (``imgcomp info``); loading a model imports it.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from imgcomp.errors import ImgcompError
from imgcomp.io import file_sha256

if TYPE_CHECKING:
    from imgcomp.models.export import LoadedModel

WEIGHTS_FILE = "model.safetensors"  # as imgcomp.models.export names them (which imports torch)
CONFIG_FILE = "config.json"
WEIGHTS_ROOT = Path(__file__).parent / "weights"
DEFAULT_MODEL = "mentzer2018/cpu-mixed"


def shipped_models() -> dict[str, Path]:
    """``system/model`` name -> folder of every model bundled with this installation."""
    if not WEIGHTS_ROOT.is_dir():
        return {}
    return {
        f"{system.name}/{folder.name}": folder
        for system in sorted(WEIGHTS_ROOT.iterdir()) if system.is_dir()
        for folder in sorted(system.iterdir())
        if (folder / WEIGHTS_FILE).is_file() and (folder / CONFIG_FILE).is_file()
    }


def canonical_name(name: str) -> str:
    """A shipped model's ``system/model`` name from itself or its 0.2-0.5 alias ``system-model``."""
    shipped = shipped_models()
    if name in shipped:
        return name
    for full in shipped:
        if name == full.replace("/", "-", 1):
            return full
    return name


@lru_cache(maxsize=32)
def _weights_sha256(path: str, mtime_ns: int) -> str:
    return file_sha256(path)


@lru_cache(maxsize=8)
def _load_cached(folder: str, mtime_ns: int) -> LoadedModel:
    from imgcomp.models.export import load_model

    return load_model(folder)


def model_folder(model: str | os.PathLike) -> Path:
    """The folder of a shipped model's name (or alias), or ``model`` itself as a folder path."""
    shipped = shipped_models()
    folder = shipped.get(canonical_name(str(model))) or Path(model)
    if not folder.is_dir():
        known = ", ".join(shipped) or "none are installed"
        raise ImgcompError(f"model {str(model)!r} not found: give a model folder or a shipped name ({known})")
    return folder


def model_name(loaded: LoadedModel) -> str:
    """``system/model`` of a shipped model, else its folder's path."""
    for name, folder in shipped_models().items():
        if loaded.path is not None and folder.resolve() == Path(loaded.path).resolve():
            return name
    return str(loaded.path) if loaded.path is not None else "(in memory)"


def get_model(model: str | os.PathLike | LoadedModel | None = None) -> LoadedModel:
    """A model by shipped name, folder path, an already loaded model, or the default."""
    from imgcomp.models.export import LoadedModel

    if isinstance(model, LoadedModel):
        return model
    folder = model_folder(DEFAULT_MODEL if model is None else model)
    weights = folder / WEIGHTS_FILE
    if not weights.exists():  # a sharded model: config.json is written last, at every save
        weights = folder / CONFIG_FILE
    return _load_cached(str(folder.resolve()), weights.stat().st_mtime_ns if weights.exists() else 0)


@lru_cache(maxsize=8)
def _load_torch_free_cached(folder: str, mtime_ns: int):
    from imgcomp.models.torch_free import load_torch_free_model

    weights = Path(folder) / WEIGHTS_FILE
    return load_torch_free_model(folder, _weights_sha256(str(weights), mtime_ns) if weights.is_file() else None)


def get_torch_free_model(model: str | os.PathLike):
    """A model by shipped name or folder, loaded for decoding without torch
    (:mod:`imgcomp.models.torch_free`); None where that is not possible (its system has no
    torch-free decoder, or its weights are sharded)."""
    folder = model_folder(model)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        return None
    return _load_torch_free_cached(str(folder.resolve()), weights.stat().st_mtime_ns)


@lru_cache(maxsize=32)
def _architecture(config: str, mtime_ns: int) -> str | None:
    import json

    try:
        data = json.loads(Path(config).read_text(encoding="utf-8"))
        value = data.get("config", data).get("architecture")  # config.json: {"config": {...}, "metadata": {...}}
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def coding_system(name: str, folder: Path) -> str:
    """The system that codes the files of shipped model ``name`` (in ``folder``): its config's
    ``architecture``, else the ``<system>`` of its name."""
    config = folder / CONFIG_FILE
    try:
        found = _architecture(str(config), config.stat().st_mtime_ns)
    except OSError:
        found = None
    return found or name.split("/")[0]


def shipped_name_by_tag(tag: bytes, system_id: int | None = None, stream_version: int | None = None) -> str | None:
    """The ``system/model`` name of the shipped model whose tag is ``tag`` (of system
    ``system_id``), None if none is installed; loads no model. For files of imgcomp 0.2-0.5
    (``stream_version`` None) the tag is the first bytes of the weights' SHA-256; for later stream
    versions the system's tag, which may cover more of the model's files
    (:meth:`imgcomp.systems.base.System.model_tag`)."""
    from imgcomp.systems import SYSTEM_IDS, get_system

    for name, folder in shipped_models().items():
        system_name = coding_system(name, folder)
        if system_id is not None and SYSTEM_IDS.get(system_name) != system_id:
            continue
        weights = folder / WEIGHTS_FILE
        sha256 = _weights_sha256(str(weights), weights.stat().st_mtime_ns)
        if stream_version is None:
            candidate = bytes.fromhex(sha256)[: len(tag)]
        else:
            try:
                candidate = get_system(system_name).model_tag(sha256, folder, stream_version)
            except ImgcompError:  # this model cannot code that stream version
                continue
        if candidate == tag:
            return name
    return None


def require_shipped_name_by_tag(tag: bytes, system_id: int | None = None, stream_version: int | None = None) -> str:
    """:func:`shipped_name_by_tag`, with a clear error where no installed model has the tag."""
    name = shipped_name_by_tag(tag, system_id, stream_version)
    if name is None:
        raise ImgcompError(
            f"file was made with a model that is not installed (tag {tag.hex()}); pass it with --model"
        )
    return name


def find_model_by_tag(tag: bytes, system_id: int | None = None, stream_version: int | None = None) -> LoadedModel:
    """The shipped model whose tag is ``tag`` (see :func:`shipped_name_by_tag`)."""
    return get_model(require_shipped_name_by_tag(tag, system_id, stream_version))
