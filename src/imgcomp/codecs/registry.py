"""Codec registry: names to codec factories.

The classical codecs register themselves when :mod:`imgcomp.codecs` is imported; a learned codec
registers itself the same way::

    from imgcomp.codecs import Codec, register_codec

    class ContextModelCodec(Codec):
        name = "mysystem/mymodel"
        ...

    register_codec("mysystem/mymodel", ContextModelCodec)

The factory is called once, lazily, on the first :func:`get_codec`. For ``imgcomp eval --jobs N``
with N > 1 the factory is sent to worker processes, so it must be picklable: a class or a
module-level function (not a lambda).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from imgcomp.codecs.base import Codec
from imgcomp.errors import ImgcompError

CodecFactory = Callable[[], Codec]


@dataclass(frozen=True)
class _Entry:
    factory: CodecFactory
    baseline: bool
    deprecated: bool = False


_ENTRIES: dict[str, _Entry] = {}
_INSTANCES: dict[str, Codec] = {}


def register_codec(
    name: str, factory: CodecFactory, *, baseline: bool = False, replace: bool = False, deprecated: bool = False
) -> None:
    """Make ``factory()`` available as codec ``name``.

    ``baseline=True`` marks a classical codec: ``imgcomp eval`` runs those by default.
    ``deprecated=True`` keeps an old name working without listing it. Learned codecs are named
    ``system/model`` (``mentzer2018/cpu-colour-lp``, ``mentzer2018/cpu-colour-lp+refine20``).
    Registering a taken name raises :class:`ImgcompError` unless ``replace=True``.
    """
    plain = name.replace("_", "").replace("-", "").replace("/", "").replace("+", "")
    if not name or not plain.isalnum() or name != name.lower() or name.count("/") > 1 or name.startswith(("/", "+")):
        raise ImgcompError(f"codec name {name!r} must be lower-case letters, digits, '-', '_', '+' and one '/'")
    if name in _ENTRIES and not replace:
        raise ImgcompError(f"codec {name!r} is already registered")
    _ENTRIES[name] = _Entry(factory, baseline, deprecated)
    _INSTANCES.pop(name, None)


def available_codecs(*, baseline_only: bool = False, include_deprecated: bool = False) -> list[str]:
    """Registered codec names, sorted; ``baseline_only`` keeps the classical ones."""
    return sorted(
        name for name, entry in _ENTRIES.items()
        if (entry.baseline or not baseline_only) and (include_deprecated or not entry.deprecated)
    )


def codec_factory(name: str) -> CodecFactory:
    """The factory registered under ``name`` (what worker processes rebuild a codec from)."""
    _check_known(name)
    return _ENTRIES[name].factory


def get_codec(name: str) -> Codec:
    """The codec registered under ``name`` (one shared instance per process)."""
    _check_known(name)
    if name not in _INSTANCES:
        codec = _ENTRIES[name].factory()
        if not isinstance(codec, Codec):
            raise ImgcompError(f"codec factory for {name!r} returned {type(codec).__name__}, not a Codec")
        _INSTANCES[name] = codec
    return _INSTANCES[name]


def parse_codec_names(text: str) -> list[str]:
    """Split a comma-separated list such as ``"jpeg420,webp"`` and check every name."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise ImgcompError("no codec names given")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ImgcompError(f"codec listed twice: {', '.join(duplicates)}")
    for name in names:
        _check_known(name)
    return names


def _check_known(name: str) -> None:
    if name not in _ENTRIES:
        raise ImgcompError(f"unknown codec {name!r}; available: {', '.join(available_codecs())}")
