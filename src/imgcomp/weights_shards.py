"""Model weights split into safetensors shards of bounded size (``model-00001-of-00003.safetensors``).

A GPU job can bring back only files of at most 16 MiB, so its exports split the weights; a
sharded model folder is the usual ``config.json`` plus the shards instead of ``model.safetensors``,
and loads wherever a model folder does (:func:`imgcomp.models.export.load_model`).

``config.json`` lists every shard with its SHA-256, and loading checks them, so a folder whose
shards come from different saves (a job killed while writing) is refused with a clear error
instead of loading mixed weights. A sharded model's identity (the weights hash that compressed
files carry) is the SHA-256 of the single ``model.safetensors`` the same weights would have, so
:func:`merge_shards` gives a folder whose files decode the same.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save, save_file

from imgcomp.errors import ImgcompError

MIB = 1024 * 1024
DEFAULT_MAX_SHARD_BYTES = 16 * MIB
SHARDS_KEY = "shards"  # in config.json: [{"file": ..., "sha256": ..., "bytes": ...}, ...]
_SHARD_NAME = re.compile(r"^model-(\d{5})-of-(\d{5})\.safetensors$")
_HEADER_BYTES_PER_TENSOR = 256  # generous bound on a tensor's entry in the safetensors JSON header


def shard_name(index: int, count: int) -> str:
    return f"model-{index + 1:05d}-of-{count:05d}.safetensors"


def shard_files(folder: str | os.PathLike) -> list[Path]:
    """The shard files in ``folder`` (sorted), whatever their count says."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if _SHARD_NAME.match(p.name))


def is_sharded(folder: str | os.PathLike) -> bool:
    """True if ``folder`` holds a sharded model (shards and a config.json listing them)."""
    return bool(shard_files(folder)) and (Path(folder) / "config.json").is_file()


def split_state(state: dict[str, torch.Tensor], max_bytes: int) -> list[dict[str, torch.Tensor]]:
    """Greedy split into groups whose safetensors files stay within ``max_bytes``."""
    groups: list[dict[str, torch.Tensor]] = [{}]
    size = 8
    for name in sorted(state):
        tensor = state[name]
        need = tensor.numel() * tensor.element_size() + _HEADER_BYTES_PER_TENSOR + len(name)
        if need + 8 > max_bytes:
            raise ImgcompError(f"tensor {name} ({need} bytes) does not fit in a shard of {max_bytes} bytes")
        if groups[-1] and size + need > max_bytes:
            groups.append({})
            size = 8
        groups[-1][name] = tensor
        size += need
    return groups


def weights_sha256(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 of the ``model.safetensors`` these weights make (what ``export_model`` writes)."""
    return hashlib.sha256(save({k: v.detach().cpu().contiguous() for k, v in state.items()})).hexdigest()


def save_shards(
    state: dict[str, torch.Tensor], folder: str | os.PathLike, max_bytes: int = DEFAULT_MAX_SHARD_BYTES
) -> list[dict[str, Any]]:
    """Write the shards of ``state`` into ``folder`` (each via a temporary file and a rename) and
    delete shards of an earlier save that this one does not overwrite; returns their list for
    config.json."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    groups = split_state(state, max_bytes)
    listing = []
    names = set()
    for index, group in enumerate(groups):
        name = shard_name(index, len(groups))
        data = save(group)
        if len(data) > max_bytes:  # the header estimate above is generous; check anyway
            raise ImgcompError(f"{name}: {len(data)} bytes exceeds the shard limit of {max_bytes}")
        tmp = folder / f".{name}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, folder / name)
        listing.append({"file": name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)})
        names.add(name)
    for stale in shard_files(folder):
        if stale.name not in names:
            stale.unlink()
    return listing


def load_shards(folder: str | os.PathLike, listing: list[dict[str, Any]] | None = None) -> dict[str, torch.Tensor]:
    """The merged weights of a sharded folder; ``listing`` (config.json's) is checked if given."""
    folder = Path(folder)
    if listing is None:
        try:
            listing = json.loads((folder / "config.json").read_text()).get(SHARDS_KEY)
        except (OSError, json.JSONDecodeError, AttributeError) as exc:
            raise ImgcompError(f"{folder}/config.json: unreadable ({exc})") from None
    if not isinstance(listing, list) or not listing:
        raise ImgcompError(f"{folder}: config.json does not list the model's shards")
    state: dict[str, torch.Tensor] = {}
    for entry in listing:
        try:
            name, expected = str(entry["file"]), str(entry["sha256"])
        except (KeyError, TypeError):
            raise ImgcompError(f"{folder}: invalid shard entry {entry!r} in config.json") from None
        path = folder / name
        if not _SHARD_NAME.match(name) or not path.is_file():
            raise ImgcompError(f"{folder}: shard {name} is missing")
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != expected:
            raise ImgcompError(f"{path}: does not match config.json (shards from different saves?)")
        try:
            part = load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise ImgcompError(f"{path}: cannot load weights ({exc})") from None
        overlap = set(part) & set(state)
        if overlap:
            raise ImgcompError(f"{path}: tensor {sorted(overlap)[0]} is in two shards")
        state.update(part)
    return state


def export_sharded(
    model: torch.nn.Module, out_dir: str | os.PathLike, metadata: dict[str, Any] | None = None,
    max_bytes: int = DEFAULT_MAX_SHARD_BYTES,
) -> Path:
    """Export like :func:`imgcomp.models.export.export_model`, with the weights in shards.

    The shards are written first and config.json (which lists them) last, both atomically, so a
    kill leaves either the previous export or the new one (or, between shard renames, a folder
    that loading refuses because config.json's hashes do not match).
    """
    from imgcomp.io import write_atomic

    out = Path(out_dir)
    if (out / "model.safetensors").exists():
        raise ImgcompError(f"{out}: holds an unsharded model; export the shards to another folder")
    listing = save_shards(model.state_dict(), out, max_bytes)
    document = {"config": model.config.to_dict(), "metadata": metadata or {}, SHARDS_KEY: listing}
    text = json.dumps(document, indent=2, sort_keys=True) + "\n"
    write_atomic(out / "config.json", lambda handle: handle.write(text.encode()))
    return out


def merge_shards(src: str | os.PathLike, dst: str | os.PathLike, force: bool = False) -> Path:
    """A single-file copy (``model.safetensors`` + ``config.json``) of a sharded model folder; its
    weights hash equals the sharded model's, so files made with either decode with the other."""
    from imgcomp.io import write_atomic

    src, dst = Path(src), Path(dst)
    if not is_sharded(src):
        raise ImgcompError(f"{src}: not a sharded model folder")
    if not force and ((dst / "model.safetensors").exists() or (dst / "config.json").exists()):
        raise ImgcompError(f"{dst}: already holds a model (use force to overwrite)")
    document = json.loads((src / "config.json").read_text())
    state = load_shards(src, document.get(SHARDS_KEY))
    dst.mkdir(parents=True, exist_ok=True)
    tmp = dst / ".model.safetensors.tmp"
    save_file(state, str(tmp))
    os.replace(tmp, dst / "model.safetensors")
    document.pop(SHARDS_KEY, None)
    text = json.dumps(document, indent=2, sort_keys=True) + "\n"
    write_atomic(dst / "config.json", lambda handle: handle.write(text.encode()))
    return dst
