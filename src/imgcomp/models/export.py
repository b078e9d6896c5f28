"""Exported models of any system: ``model.safetensors`` (weights) + ``config.json`` (config and metadata).

No pickles: a model file can be inspected and loaded without executing code. The config's
``architecture`` field names the system (:mod:`imgcomp.systems`), whose registered config class
parses the rest. The SHA-256 of the weights file identifies the exact model inside compressed
files (see :mod:`imgcomp.container`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from imgcomp.errors import ImgcompError
from imgcomp.io import file_sha256, write_atomic
from imgcomp.models.torch_free import not_a_model_folder, read_model_config
from imgcomp.systems import get_system

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


@dataclass
class LoadedModel:
    """A model ready for inference, with what the files said about it."""

    model: torch.nn.Module
    config: Any  # the system's config class
    metadata: dict[str, Any] = field(default_factory=dict)
    weights_sha256: str = ""
    path: Path | None = None
    cache: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)  # derived objects

    @property
    def system(self):
        """The :class:`~imgcomp.systems.base.System` this model belongs to."""
        return get_system(self.config.architecture)


def export_model(
    model: torch.nn.Module, out_dir: str | os.PathLike, metadata: dict[str, Any] | None = None,
    force: bool = False,
) -> Path:
    """Write ``out_dir/model.safetensors`` and ``out_dir/config.json``."""
    out = Path(out_dir)
    weights_path, config_path = out / WEIGHTS_FILE, out / CONFIG_FILE
    if not force and (weights_path.exists() or config_path.exists()):
        raise ImgcompError(f"{out}: already holds a model (use --force to overwrite)")
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = out / f".{WEIGHTS_FILE}.tmp"
    save_file(state, str(tmp))
    os.replace(tmp, weights_path)
    document = {"config": model.config.to_dict(), "metadata": metadata or {}}
    text = json.dumps(document, indent=2, sort_keys=True) + "\n"
    write_atomic(config_path, lambda handle: handle.write(text.encode()))
    return out


def load_model(model_dir: str | os.PathLike) -> LoadedModel:
    """Load an exported model for inference (eval mode, weights without gradients); clear
    :class:`ImgcompError` on any problem."""
    folder = Path(model_dir)
    weights_path, config_path = folder / WEIGHTS_FILE, folder / CONFIG_FILE
    from imgcomp import weights_shards  # a GPU job's export: weights in shards (model-0000i-of-0000n)

    sharded = not weights_path.is_file() and weights_shards.is_sharded(folder)
    if not (weights_path.is_file() or sharded) or not config_path.is_file():
        raise not_a_model_folder(folder)
    config, metadata, document = read_model_config(config_path)
    model = get_system(config.architecture).build(config)
    try:
        state = weights_shards.load_shards(folder, document.get(weights_shards.SHARDS_KEY)) if sharded else load_file(str(weights_path))
        model.load_state_dict(state)
    except (SafetensorError, RuntimeError, OSError) as exc:
        raise ImgcompError(f"{weights_path}: cannot load weights ({exc})") from None
    model.eval().requires_grad_(False)
    for network in (getattr(model, "encoder", None), getattr(model, "decoder", None)):
        if network is not None:  # oneDNN runs these convolutions ~15% faster on CPU in NHWC
            network.to(memory_format=torch.channels_last)
    sha256 = weights_shards.weights_sha256(state) if sharded else file_sha256(weights_path)
    return LoadedModel(model, config, metadata, sha256, folder)
