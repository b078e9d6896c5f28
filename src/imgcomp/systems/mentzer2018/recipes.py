"""Named training recipes of Mentzer et al. 2018: the exact settings behind each model we ship or report."""

from __future__ import annotations

from typing import Any

from imgcomp.training.recipes import recipe_settings, scaled_to_top, training_config
from imgcomp.systems.mentzer2018.training import TrainConfig

_COLOUR_SETTINGS: dict[str, Any] = {
    "preset": "cpu", "steps": 7000, "heads": 5, "target_bpp": 0.8,
    "head_target_bpp": [0.12, 0.22, 0.35, 0.52, 0.8], "val_every": 1000,
    "rate_through_context": False, "colour_weight": 0.5,
}

RECIPES: dict[str, dict[str, Any]] = {
    "cpu-quick": {
        "description": "cpu preset, one rate (0.2 bpp), 1500 steps: 6-20 min on 2 CPU cores",
        "settings": {"preset": "cpu", "steps": 1500, "target_bpp": 0.2, "heads": 1},
    },
    "cpu-multirate": {
        "description": "cpu preset, 5 importance heads (0.12..0.8 bpp), 4000 steps; mentzer2018/cpu (the first shipped model) continues it with --resume --steps 7000",
        "settings": {
            "preset": "cpu", "steps": 4000, "heads": 5, "target_bpp": 0.8,
            "head_target_bpp": [0.12, 0.22, 0.35, 0.52, 0.8], "val_every": 1000,
            "rate_through_context": False,  # as the shipped model's first 7000 steps were trained
        },
    },
    "cpu-multirate-colour": {
        "description": "cpu preset, 5 heads, 7000 steps, MS-SSIM + 0.5 x L1 colour anchor: mentzer2018/cpu-colour (the default model of imgcomp 0.3 and 0.4)",
        "settings": _COLOUR_SETTINGS,
    },
    "cpu-multirate-colour-lp": {
        "description": "fine-tunes mentzer2018/cpu-colour 3000 steps (lr 1e-4) for its output with the low-pass layer added (16x16 blocks, step 3): the shipped default model (mentzer2018/cpu-colour-lp); 20 min with one thread on a 2-core EPYC",
        "settings": {  # the colour model's own settings, with the fine-tune's on top
            **_COLOUR_SETTINGS, "steps": 3000,
            "init_from": "mentzer2018/cpu-colour", "lr": 1e-4, "lowpass_block": 16, "lowpass_step": 3,
        },
    },
    "cpu-mixed": {
        "description": "fine-tunes mentzer2018/cpu-colour-lp 3000 steps (lr 5e-4) with its heads' targets scaled to 0.15-1.0 bpp, on --data DATA/train-mixed.txt (photographs 4x, textures 1x): the shipped default (mentzer2018/cpu-mixed); 20-45 min with one thread on a 2-core EPYC",
        "settings": {
            **_COLOUR_SETTINGS, "steps": 3000, "init_from": "mentzer2018/cpu-colour-lp", "lr": 5e-4,
            "target_bpp": 1.0, "head_target_bpp": scaled_to_top(_COLOUR_SETTINGS["head_target_bpp"], 1.0),
            "lowpass_block": 16, "lowpass_step": 3,
        },
    },
    "gpu-multirate": {
        "description": "mid preset (n=96, 4 residual blocks), 5 heads (0.12..0.8 bpp), colour anchor, batch 32 x 256px: the GPU job (scripts/gpu_train.sh, docs/training-gpu.md) trains it for a time budget",
        "settings": {
            **_COLOUR_SETTINGS, "preset": "mid", "steps": 20000, "batch_size": 32, "crop": 256,
            "log_every": 50, "checkpoint_every": 1000,
        },
    },
    "gpu-multirate-paper": {
        "description": "the GPU job's recipe on the paper preset (n=128, 5x3 residual blocks; decodes ~4x slower than gpu-multirate)",
        "settings": {
            **_COLOUR_SETTINGS, "preset": "paper", "steps": 20000, "batch_size": 32, "crop": 256,
            "log_every": 50, "checkpoint_every": 1000,
        },
    },
    "paper-multirate": {
        "description": "paper preset (n=128, 5x3 residual blocks), 5 heads, for a GPU",
        "settings": {
            "preset": "paper", "steps": 60000, "target_bpp": 0.8, "heads": 5,
            "batch_size": 16, "crop": 176, "workers": 6,
        },
    },
}


def build_config(recipe: str | None, overrides: dict[str, Any]) -> TrainConfig:
    """A recipe's settings with command-line overrides on top; ``data`` is required. A
    ``target_bpp`` override of a recipe with per-head targets scales them so that the highest is
    that number (the heads keep their ratios)."""
    settings = recipe_settings(RECIPES, recipe)
    top = overrides.get("target_bpp")
    heads = settings.get("head_target_bpp")
    if top is not None and heads and "head_target_bpp" not in overrides:
        overrides = {**overrides, "head_target_bpp": scaled_to_top(heads, top)}
    settings.update(overrides)
    return training_config(TrainConfig, settings, RECIPES, recipe)
