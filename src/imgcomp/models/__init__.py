"""Model files of any system: export and load (safetensors + JSON config). The networks themselves
live in their system's package (:mod:`imgcomp.systems`). :mod:`.export` loads models with torch;
:mod:`.torch_free` loads them for decoding without it (so this package imports neither eagerly)."""

from __future__ import annotations

__all__ = ["CONFIG_FILE", "WEIGHTS_FILE", "LoadedModel", "export_model", "load_model"]


def __getattr__(name: str):
    if name in __all__:
        from imgcomp.models import export

        return getattr(export, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
