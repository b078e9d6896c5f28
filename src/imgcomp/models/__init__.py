"""Model files of any system: export and load (safetensors + JSON config). The networks themselves
live in their system's package (:mod:`imgcomp.systems`)."""

from imgcomp.models.export import CONFIG_FILE, WEIGHTS_FILE, LoadedModel, export_model, load_model

__all__ = ["CONFIG_FILE", "WEIGHTS_FILE", "LoadedModel", "export_model", "load_model"]
