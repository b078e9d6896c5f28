"""Loading an exported model for decoding without torch (``model.safetensors`` as numpy arrays).

A system that can decode some of its stream versions without torch says so with
``torch_free_stream_versions`` and builds its decoding model (a :class:`TorchFreeModel`) with
``load_torch_free(folder, config, metadata, weights_sha256, state)``; :func:`load_torch_free_model` does the shared part (the folder,
the config, the weights, their SHA-256). Sharded folders of the GPU job load with torch only.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgcomp.errors import ImgcompError
from imgcomp.io import file_sha256
from imgcomp.systems import config_from_dict, get_system

WEIGHTS_FILE = "model.safetensors"  # as imgcomp.models.export names them
CONFIG_FILE = "config.json"


@dataclass(kw_only=True)
class TorchFreeModel:
    """What a system's decoding model without torch holds beside its own parts (the counterpart of
    :class:`imgcomp.models.export.LoadedModel` for decoding only); systems subclass it."""

    config: Any
    metadata: dict[str, Any] = field(default_factory=dict)
    weights_sha256: str = ""
    path: Path | None = None
    cache: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)
    torch_free = True  # decoded by numpy alone (imgcomp.api picks numpy's low-pass upsampling too)

    @property
    def system(self) -> Any:
        return get_system(self.config.architecture)


def read_model_config(config_path: Path) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """A model folder's ``config.json``: the system's config object, the metadata and the whole
    document (torch-free; :mod:`.export` reads it the same way)."""
    try:
        document = json.loads(config_path.read_text())
        return config_from_dict(document["config"]), document.get("metadata", {}), document
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ImgcompError(f"{config_path}: invalid model config ({exc})") from None


def not_a_model_folder(folder: Path) -> ImgcompError:
    """The error for a folder without a model's files; it names ``RUN/model`` when given a
    training run's folder."""
    hint = f"; a training run's model is {folder / 'model'}" if (folder / "model" / CONFIG_FILE).is_file() else ""
    return ImgcompError(f"{folder}: not a model folder (needs {WEIGHTS_FILE} and {CONFIG_FILE}){hint}")


def supports_torch_free(system: Any, stream_version: int) -> bool:
    """Whether ``system`` decodes ``stream_version`` without torch."""
    return stream_version in getattr(system, "torch_free_stream_versions", ()) and hasattr(system, "load_torch_free")


def load_torch_free_model(model_dir: str | os.PathLike, weights_sha256: str | None = None) -> Any | None:
    """The torch-free decoding model of a folder, or None where its system has none or the weights
    are sharded; a clear :class:`ImgcompError` on a broken folder."""
    folder = Path(model_dir)
    weights_path, config_path = folder / WEIGHTS_FILE, folder / CONFIG_FILE
    if not config_path.is_file():
        raise not_a_model_folder(folder)
    if not weights_path.is_file():
        return None
    config, metadata, _ = read_model_config(config_path)
    system = get_system(config.architecture)
    if not hasattr(system, "load_torch_free"):
        return None
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError) as exc:
        raise ImgcompError(f"{weights_path}: cannot load weights ({exc})") from None
    return system.load_torch_free(folder, config, metadata, weights_sha256 or file_sha256(weights_path), state)
