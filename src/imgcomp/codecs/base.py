"""The one small interface every codec implements, classical or learned.

A codec turns an ``(H, W, 3)`` uint8 RGB image into the bytes of a real file at one *setting*
(a quality, a distance, a target rate: whatever knob the codec has) and back. The evaluation
runner only sees this interface, so a learned codec plugs in by subclassing :class:`Codec` and
calling :func:`imgcomp.codecs.register_codec`.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np

from imgcomp.errors import ImgcompError

Setting = int | float
"""One point of a codec's quality sweep; JSON-serialisable by design."""


class Codec(ABC):
    """An image codec: ``encode(image, setting) -> bytes`` and ``decode(bytes) -> image``.

    Subclasses set the class attributes and implement :meth:`library_version`, :meth:`encode`
    and :meth:`decode`; :meth:`header_bytes` is optional.
    """

    name: ClassVar[str] = ""
    """Registry name, e.g. ``"jpeg420"``."""
    label: ClassVar[str] = ""
    """Human-readable name for tables and plot legends, e.g. ``"JPEG 4:2:0"``."""
    setting_name: ClassVar[str] = "quality"
    """What a setting means, e.g. ``"quality"`` or ``"distance"``."""
    default_settings: ClassVar[tuple[Setting, ...]] = ()
    """The default sweep, ordered from the lowest to the highest rate; on natural 768x512 photos it
    spans about 0.05 to 2 bpp (as far as the codec can go)."""

    @abstractmethod
    def library_version(self) -> str:
        """The library (and version) doing the work, e.g. ``"libjpeg-turbo 3.1.0 (Pillow 12.0.0)"``."""

    @abstractmethod
    def encode(self, image: np.ndarray, setting: Setting) -> bytes:
        """Compress an ``(H, W, 3)`` uint8 image into the complete bytes of a file."""

    @abstractmethod
    def decode(self, data: bytes) -> np.ndarray:
        """Decompress a file made by :meth:`encode` into an ``(H, W, 3)`` uint8 image."""

    def header_bytes(self, data: bytes) -> int | None:
        """Bytes of ``data`` that are container/header rather than coded image payload.

        ``None`` where the format does not allow an honest split (then only whole-file bpp is
        reported).
        """
        return None

    def parameters(self) -> dict[str, Any]:
        """Fixed encoder options (everything but the setting), recorded with every result."""
        return {}

    def describe(self) -> dict[str, Any]:
        """Everything that identifies this codec's results: name, library, options, setting kind."""
        return {
            "name": self.name,
            "label": self.label or self.name,
            "library": self.library_version(),
            "setting_name": self.setting_name,
            "parameters": self.parameters(),
        }

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


def check_input_image(image: np.ndarray) -> np.ndarray:
    """Validate an encoder input: a C-contiguous ``(H, W, 3)`` uint8 array."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise ImgcompError("codec input must be a numpy uint8 array")
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise ImgcompError(f"codec input must have shape (H, W, 3), got {image.shape}")
    return np.ascontiguousarray(image)


def check_decoded_image(array: np.ndarray, codec_name: str) -> np.ndarray:
    """Validate a decoder output the same way, so a codec never hands back something else."""
    array = np.asarray(array)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ImgcompError(
            f"{codec_name}: decoder returned {array.dtype} {array.shape}, expected uint8 (H, W, 3)"
        )
    return np.ascontiguousarray(array)


def setting_in_range(
    codec_name: str,
    setting: Setting,
    low: float,
    high: float,
    *,
    integer: bool = False,
    what: str = "quality",
) -> float:
    """Check a setting is a number in ``[low, high]`` (an integer if ``integer``); return it as float."""
    try:
        value = float(setting)
    except (TypeError, ValueError):
        raise ImgcompError(f"{codec_name}: {what} must be a number, got {setting!r}") from None
    if not low <= value <= high or (integer and value != int(value)):
        kind = "an integer" if integer else "a number"
        raise ImgcompError(f"{codec_name}: {what} must be {kind} in [{low:g}, {high:g}], got {setting!r}")
    return value


@contextlib.contextmanager
def library_errors(codec_name: str, action: str) -> Iterator[None]:
    """Turn the errors a codec library raises on bad data or options into :class:`ImgcompError`."""
    try:
        yield
    except ImgcompError:
        raise
    except (OSError, ValueError, RuntimeError, EOFError, SyntaxError, TypeError) as exc:
        raise ImgcompError(f"{codec_name}: cannot {action} ({type(exc).__name__}: {exc})") from None
    except Exception as exc:  # imagecodecs raises its own exception classes
        if type(exc).__module__.startswith("imagecodecs"):
            raise ImgcompError(f"{codec_name}: cannot {action} ({exc})") from None
        raise
