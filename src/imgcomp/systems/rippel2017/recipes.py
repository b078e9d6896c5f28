"""Named training recipes of Rippel & Bourdev 2017."""

from __future__ import annotations

from typing import Any

from imgcomp.training.recipes import recipe_settings, scaled_to_top, training_config
from imgcomp.systems.rippel2017.training import TrainConfig

RECIPES: dict[str, dict[str, Any]] = {
    "cpu": {
        "description": "cpu preset (M = 6 levels, C = 64, B = 6), 5 qualities (0.1..0.8 bpp) in one network, "
        "MS-SSIM + ACR, 6000 steps of 8 x 128px crops: for 2 CPU cores",
        "settings": {
            "preset": "cpu", "steps": 6000, "batch_size": 8, "crop": 128,
            "target_bpp": [0.1, 0.2, 0.35, 0.55, 0.8], "val_every": 1000,
        },
    },
    "paper": {
        "description": "paper preset, 5 qualities, 60000 steps of 16 x 256px crops: for a GPU",
        "settings": {
            "preset": "paper", "steps": 60000, "batch_size": 16, "crop": 256,
            "target_bpp": [0.1, 0.2, 0.35, 0.55, 0.8], "val_every": 2000, "workers": 6,
        },
    },
    "cpu-lp": {
        "description": "fine-tunes a cpu-recipe model (--init-from RUN/model) for its output with the low-pass "
        "layer added (32 x 32 blocks, step 4; encoders then code with these settings instead of searching "
        "per image): 3000 steps of 8 x 128px crops, lr 1e-4. The shipped rippel2017/cpu-lp is "
        "cpu (6000 steps) -> cpu-gan --no-adversarial (2000) -> cpu-lp (3000) -> cpu-lp --steps 6000 --lr 3e-4 "
        "-> cpu-lp --steps 6000 --lr 1e-3, four times (docs/rippel2017.md)",
        "needs_init_from": True,
        "settings": {
            "preset": "cpu", "steps": 3000, "batch_size": 8, "crop": 128, "lr": 1e-4,
            "lowpass_block": 32, "lowpass_step": 4,
            "target_bpp": [0.1, 0.2, 0.35, 0.55, 0.8], "val_every": 1000,
        },
    },
    "cpu-gan": {
        "description": "fine-tunes a cpu-recipe model (--init-from RUN/model) with the multiscale adversarial "
        "training of sec. 4 on: 2000 steps of 8 x 128px crops, lr 1e-4, confusion gradient 0.3 x the "
        "reconstruction gradient, accuracy bounds 0.8 / 0.95",
        "needs_init_from": True,
        "settings": {
            "preset": "cpu", "steps": 2000, "batch_size": 8, "crop": 128, "lr": 1e-4,
            "target_bpp": [0.1, 0.2, 0.35, 0.55, 0.8], "val_every": 1000,
            "adversarial": True, "adversarial_ratio": 0.3, "d_lr": 1e-4,
            "d_accuracy_low": 0.8, "d_accuracy_high": 0.95, "d_accuracy_momentum": 0.8,
        },
    },
}


def build_config(recipe: str | None, overrides: dict[str, Any]) -> TrainConfig:
    """A recipe's settings with command-line overrides on top; ``data`` is required. A single
    ``target_bpp`` number scales the recipe's per-quality targets so that the highest is that number."""
    settings = recipe_settings(RECIPES, recipe)
    top = overrides.get("target_bpp")
    if isinstance(top, (int, float)):  # the command line's --target-bpp: the highest quality's target
        base = settings.get("target_bpp") or RECIPES["cpu"]["settings"]["target_bpp"]
        overrides = {**overrides, "target_bpp": scaled_to_top(base, top)}
    settings.update(overrides)
    return training_config(TrainConfig, settings, RECIPES, recipe)
