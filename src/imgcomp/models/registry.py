"""A registry of model architectures, so new systems join without touching callers.

An architecture registers a factory ``config -> nn.Module`` under a name; a model's JSON config
carries that name, which is how exported weights find their class again (see
:mod:`imgcomp.models.export`).
"""

from __future__ import annotations

from typing import Callable, Dict

from torch import nn

from imgcomp.errors import ImgcompError

_ARCHITECTURES: Dict[str, Callable[..., nn.Module]] = {}


def register_architecture(name: str):
    """Class decorator: make ``cls(config)`` buildable by ``create_model(name, config)``."""

    def decorate(factory):
        if name in _ARCHITECTURES:
            raise ValueError(f"architecture {name!r} registered twice")
        _ARCHITECTURES[name] = factory
        return factory

    return decorate


def available_architectures() -> list[str]:
    return sorted(_ARCHITECTURES)


def create_model(name: str, config) -> nn.Module:
    """Build an (untrained) model of a registered architecture."""
    try:
        factory = _ARCHITECTURES[name]
    except KeyError:
        raise ImgcompError(
            f"unknown architecture {name!r}; known: {', '.join(available_architectures())}"
        ) from None
    return factory(config)
