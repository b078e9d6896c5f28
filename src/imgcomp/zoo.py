"""Models that ship inside the package (``imgcomp/weights/NAME/``) and how files find them."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from imgcomp.errors import ImgcompError
from imgcomp.io import file_sha256
from imgcomp.models.export import CONFIG_FILE, WEIGHTS_FILE, LoadedModel, load_model
from imgcomp.weights_shards import is_sharded

WEIGHTS_ROOT = Path(__file__).parent / "weights"
DEFAULT_MODEL = "mentzer2018-cpu-colour-lp"
MODEL_ENV = "IMGCOMP_MODEL"  # overrides the default model: a shipped name or a folder


def default_model() -> str:
    return os.environ.get(MODEL_ENV) or DEFAULT_MODEL


def shipped_models() -> dict[str, Path]:
    """Name -> folder of every model bundled with this installation."""
    if not WEIGHTS_ROOT.is_dir():
        return {}
    return {
        folder.name: folder
        for folder in sorted(WEIGHTS_ROOT.iterdir())
        if (folder / WEIGHTS_FILE).is_file() and (folder / CONFIG_FILE).is_file()
    }


@lru_cache(maxsize=8)
def _load_cached(folder: str, mtime_ns: int) -> LoadedModel:
    return load_model(folder)


def model_folder(model: str | os.PathLike) -> Path:
    """The folder of a shipped model's name, or ``model`` itself as a folder path."""
    shipped = shipped_models()
    folder = shipped.get(str(model)) or Path(model)
    if not folder.is_dir():
        known = ", ".join(shipped) or "none are installed"
        raise ImgcompError(f"model {str(model)!r} not found: give a model folder or a shipped name ({known})")
    return folder


def get_model(model: str | os.PathLike | LoadedModel | None = None) -> LoadedModel:
    """A model by shipped name, folder path, an already loaded model, or the default."""
    if isinstance(model, LoadedModel):
        return model
    folder = model_folder(default_model() if model is None else model)
    weights = folder / WEIGHTS_FILE
    if not weights.exists():  # a sharded model: config.json is written last, at every save
        weights = folder / CONFIG_FILE
    return _load_cached(str(folder.resolve()), weights.stat().st_mtime_ns if weights.exists() else 0)


def find_model_by_tag(tag: bytes) -> LoadedModel:
    """The default model or a shipped one whose weights' SHA-256 starts with ``tag``."""
    candidates = list(shipped_models().values())
    if os.environ.get(MODEL_ENV):
        candidates.insert(0, Path(os.environ[MODEL_ENV]))
    for folder in candidates:
        folder = shipped_models().get(str(folder), folder)
        weights = folder / WEIGHTS_FILE
        if weights.is_file() and bytes.fromhex(file_sha256(weights)).startswith(tag):
            return get_model(folder)
        if not weights.is_file() and is_sharded(folder):  # a GPU job's export (imgcomp.weights_shards)
            loaded = get_model(folder)
            if bytes.fromhex(loaded.weights_sha256).startswith(tag):
                return loaded
    raise ImgcompError(
        f"file was made with a model that is not installed (tag {tag.hex()}); pass it with --model"
    )
