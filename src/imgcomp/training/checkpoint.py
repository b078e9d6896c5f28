"""Atomic training checkpoints that resume exactly (model, optimisers, schedulers, step, RNG)."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imgcomp.errors import ImgcompError

CHECKPOINT_FILE = "checkpoint.pt"
# Tests only: seconds to wait between writing a checkpoint's temporary file and renaming it, so a
# test can kill a run in the middle of a save (tests/test_training_kill.py).
SAVE_DELAY_ENV = "IMGCOMP_TEST_SAVE_DELAY"


def temporary_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp")


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    random.setstate(state["python"])


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write to a temporary file, flush it to disk and rename, so a kill at any moment leaves the
    previous checkpoint or the new one, never half of one (a stale temporary file is removed by
    :func:`remove_stale_temporaries` when the run starts or resumes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    with open(tmp, "wb") as handle:
        torch.save(state, handle)
        handle.flush()
        os.fsync(handle.fileno())
    delay = float(os.environ.get(SAVE_DELAY_ENV, "0") or 0)
    if delay > 0:
        time.sleep(delay)
    os.replace(tmp, path)


def remove_stale_temporaries(*folders: Path) -> list[Path]:
    """Delete what a killed save left behind (``.checkpoint.pt.tmp``, ``.model.safetensors.tmp``,
    ``.config.json.<pid>.tmp``) in ``folders``; returns the removed paths."""
    removed = []
    for folder in folders:
        if not folder.is_dir():
            continue
        for tmp in folder.glob(".*.tmp"):
            if tmp.is_file():
                tmp.unlink()
                removed.append(tmp)
    return removed


def load_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ImgcompError(f"{path}: no checkpoint to resume from")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged file
        raise ImgcompError(f"{path}: unreadable checkpoint ({exc})") from None
