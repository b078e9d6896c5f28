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


def training_config(config_class: type, settings: dict[str, Any]) -> Any:
    """``config_class(**settings)``; ``data`` is required, unknown or bad settings are clear errors."""
    if "data" not in settings:
        raise ImgcompError("--data is required: a folder of training images")
    try:
        return config_class(**settings)
    except TypeError as exc:
        raise ImgcompError(f"invalid training settings: {exc}") from None
