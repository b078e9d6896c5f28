"""Named training recipes of Patel et al. 2019: the settings behind each model of this system we
ship or report. A recipe's settings are Mentzer et al.'s training config (the coding system's
``TrainConfig``, found through the registry) with this paper's objective and decoder on top."""

from __future__ import annotations

from typing import Any

from imgcomp.training.recipes import recipe_settings, training_config
from imgcomp.systems.base import get_system
from imgcomp.systems.patel2019.objective import DPC_DECODER, DPC_OBJECTIVE

CODING_SYSTEM = "mentzer2018"

# Settings of the shipped MS-SSIM model's training (mentzer2018 recipe cpu-multirate-colour-lp)
# that the DPC model keeps: 5 heads at the same targets, the low-pass layer the codec adds.
_SHIPPED_LAYOUT: dict[str, Any] = {
    "preset": "cpu", "heads": 5, "target_bpp": 0.8, "head_target_bpp": [0.12, 0.22, 0.35, 0.52, 0.8],
    "rate_through_context": False, "lowpass_block": 16, "lowpass_step": 3, "batch_size": 8, "crop": 128,
}

# Stages 3 and 4 of the shipped DPC model: the latent widened to K = 64 channels.
_WIDE_LAYOUT: dict[str, Any] = {
    **_SHIPPED_LAYOUT, **DPC_OBJECTIVE, **DPC_DECODER, "latent_channels": 64, "val_every": 100000,
    "checkpoint_every": 100,
}

RECIPES: dict[str, dict[str, Any]] = {
    "cpu-dpc": {
        "description": (
            "patel2019/dpc, the shipped DPC model: mentzer2018/cpu-colour-lp (E, importance heads, Q, P "
            "and D's body; D's up-convolutions collapsed to kernel 2 / stride 2) trained with "
            "D = DPL(ST-LPIPS AlexNet) + (1 - MS-SSIM), 5 heads (0.12..0.8 bpp), low-pass layer; "
            "1.5 s/step with one thread on a 2-core EPYC"
        ),
        "settings": {
            **_SHIPPED_LAYOUT, **DPC_OBJECTIVE, **DPC_DECODER,
            "init_from": "mentzer2018/cpu-colour-lp", "steps": 3000, "lr": 5e-4, "context_lr": 2e-4,
            "val_every": 1000, "checkpoint_every": 100,
        },
    },
    "cpu-dpc-rates": {
        "description": (
            "the second stage of patel2019/dpc: continues a cpu-dpc run (give its model: --init-from RUN/model) "
            "with head targets raised to 0.25..1.2 bpp, because after cpu-dpc the DPC model coded 768x512 photos "
            "at only ~0.3x its training crops' rate (0.045-0.19 bpp)"
        ),
        "settings": {
            **_SHIPPED_LAYOUT, **DPC_OBJECTIVE, **DPC_DECODER, "head_target_bpp": [0.25, 0.4, 0.6, 0.85, 1.2],
            "target_bpp": 1.2, "steps": 600, "lr": 3e-4, "context_lr": 2e-4, "val_every": 1000,
            "checkpoint_every": 100,
        },
        "needs_init_from": True,
    },
    "cpu-dpc-wide": {
        "description": (
            "the third stage of the DPC model: continues a cpu-dpc-rates run (--init-from RUN/model) with the "
            "latent widened from K = 32 to 64 channels (the new ones come last, so only the upper qualities use "
            "them) and head targets 0.18..1.9 bpp on training crops, because 32 channels x 6 centres capped the "
            "top quality at ~0.5 bpp on 768x512 photos (photos code at ~0.5x the crops' rate)"
        ),
        "settings": {
            **_WIDE_LAYOUT, "head_target_bpp": [0.18, 0.4, 0.7, 1.2, 1.9], "target_bpp": 1.9, "steps": 3000,
            "lr": 3e-4, "context_lr": 2e-4,
        },
        "needs_init_from": True,
    },
    "cpu-dpc-top": {
        "description": (
            "the fourth stage of the DPC model: continues a cpu-dpc-wide run (--init-from RUN/model) for 500 steps "
            "at lr 1e-4 with the two top heads' targets raised to 1.35 and 2.6 bpp on crops, because after "
            "cpu-dpc-wide quality 5 coded 768x512 photos at 0.82 bpp on average (1.0 bpp or more on 5 of 23)"
        ),
        "settings": {
            **_WIDE_LAYOUT, "head_target_bpp": [0.18, 0.4, 0.7, 1.35, 2.6], "target_bpp": 2.6, "steps": 500,
            "lr": 1e-4, "context_lr": 1e-4,
        },
        "needs_init_from": True,
    },
    "cpu-dpc-vgg": {
        "description": "cpu-dpc with the paper's VGG-16 backbone for DPL (2.5x the CPU time per step)",
        "settings": {
            **_SHIPPED_LAYOUT, **DPC_OBJECTIVE, **DPC_DECODER, "lpips_net": "vgg",
            "init_from": "mentzer2018/cpu-colour-lp", "steps": 3000, "lr": 5e-4, "context_lr": 2e-4,
            "val_every": 1000, "checkpoint_every": 100,
        },
    },
    "cpu-msssim-k2": {
        "description": "the control of cpu-dpc: same start, decoder and steps, Mentzer et al.'s MS-SSIM distortion",
        "settings": {
            **_SHIPPED_LAYOUT, **DPC_DECODER, "criterion": "ms_ssim", "colour_weight": 0.5,
            "init_from": "mentzer2018/cpu-colour-lp", "steps": 3000, "lr": 5e-4, "context_lr": 2e-4,
            "val_every": 1000, "checkpoint_every": 100,
        },
    },
}


def build_config(recipe: str | None, overrides: dict[str, Any]) -> Any:
    """A recipe's settings with command-line overrides on top, as the coding system's
    ``TrainConfig``; ``data`` is required."""
    settings: dict[str, Any] = {**DPC_OBJECTIVE, **DPC_DECODER}  # this system's defaults
    settings.update(recipe_settings(RECIPES, recipe))
    settings.update(overrides)
    return training_config(get_system(CODING_SYSTEM).training().TrainConfig, settings, RECIPES, recipe)
