"""What every system's recipes module does the same way: look a recipe up, and turn merged
settings into the system's ``TrainConfig`` with one-line errors (no torch)."""

from __future__ import annotations

from typing import Any

from imgcomp.errors import ImgcompError


def recipe_settings(recipes: dict[str, dict[str, Any]], recipe: str | None) -> dict[str, Any]:
    """A copy of ``recipe``'s settings (empty for None); an unknown name is a clear error."""
    if recipe is None:
        return {}
    if recipe not in recipes:
        raise ImgcompError(f"unknown recipe {recipe!r}; known: {', '.join(recipes)}")
    return dict(recipes[recipe]["settings"])


def scaled_to_top(targets: list[float], top: float) -> list[float]:
    """Per-quality rate targets scaled so that the highest is ``top`` (what ``--target-bpp`` does
    to a recipe's list; the ratios stay)."""
    return [top * value / targets[-1] for value in targets]


def training_config(config_class: type, settings: dict[str, Any], recipes: dict[str, dict[str, Any]] | None = None,
                    recipe: str | None = None) -> Any:
    """``config_class(**settings)``; ``data`` is required, unknown or bad settings are clear errors,
    and so is a missing ``init_from`` for a ``recipe`` of ``recipes`` that fine-tunes (``needs_init_from``)."""
    if "data" not in settings:
        raise ImgcompError("--data is required: a folder of training images")
    if recipe is not None and recipes is not None and recipes[recipe].get("needs_init_from") and not settings.get("init_from"):
        raise ImgcompError(f"recipe {recipe} fine-tunes a trained model: give it with --init-from RUN/model")
    try:
        return config_class(**settings)
    except TypeError as exc:
        raise ImgcompError(f"invalid training settings: {exc}") from None
