"""Resource limits: what one encode or decode may ask of the machine, decided before allocating.

Two rules bound every operation before its first large allocation:

* a **pixel limit** (``max_pixels``): :data:`DEFAULT_MAX_PIXELS` unless the caller passes one (the
  ``max_pixels`` argument of the API, ``--max-pixels`` on the command line) or the environment sets
  ``IMGCOMP_MAX_PIXELS``; beyond it the operation is refused with one :class:`ImgcompError`;
* a **memory estimate** per operation (:func:`estimate_bytes`: the symbol volume, the synthesis
  network's activations on the whole image, the encoder's analysis and low-pass search), refused
  when it exceeds this machine's physical memory, whatever the pixel limit says.

And one rule bounds the work a *file* can ask for by its content (container version 4): its
sections hold at least one byte per :data:`PIXELS_PER_BYTE` pixels (:func:`min_payload_bytes`);
encoders pad the payload of degenerate images (flat colour codes to a few bytes) to satisfy it, so
an 18-byte file cannot claim an 8192 x 8192 image (that needs 16 KB). Decoding costs a few
microseconds and under 100 bytes of memory per pixel, so a byte of file buys at most ~10 ms and
~0.4 MB of work; real photos code to 0.05 bpp and more, 25 times above the floor. Versions 2 and 3 (imgcomp 0.2-0.5) get the
pixel limit and the memory estimate only.

An allocation that fails anyway (``MemoryError``, torch's "not enough memory") becomes an
:class:`ImgcompError` through :func:`out_of_memory`.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

from imgcomp.errors import ImgcompError

ENV_MAX_PIXELS = "IMGCOMP_MAX_PIXELS"
# 8192 x 8192 (67 megapixels): by the estimate below decoding it peaks near 10 GB and encoding near
# 12 GB, which a 24 GB laptop survives with room for everything else.
DEFAULT_MAX_PIXELS = 8192 * 8192
PIXELS_PER_BYTE = 1 << 12  # a v4 file's sections hold at least one byte per 4096 pixels (0.002 bpp)
# Peak resident memory per pixel, measured on CPU with the default model (peak RSS of `imgcomp
# decode` of 2 and 8 megapixel photos: 0.99 and 1.81 GB, 135 bytes a pixel; encode in-process 1.04
# and 1.81 GB, 130 bytes a pixel; an 8192 x 8192 file with no coded channel: 5.9 GB, 88 bytes a
# pixel): the analysis and synthesis networks run on the whole image in float32, the symbol volume
# is int64 (K x h x w), the wavefront's index arrays are per 128 x 128 latent tile. With margin:
DECODE_BYTES_PER_PIXEL = 140
ENCODE_BYTES_PER_PIXEL = 160  # also the source image, its PIL copy and the low-pass search
BASE_BYTES = 800 << 20  # interpreter, torch, the model and its wavefront schedules


def max_pixels(override: int | None = None) -> int:
    """The pixel limit in force: ``override``, else ``IMGCOMP_MAX_PIXELS``, else the default."""
    if override is not None:
        if override < 1:
            raise ImgcompError(f"max_pixels must be >= 1, got {override}")
        return int(override)
    text = os.environ.get(ENV_MAX_PIXELS, "").strip()
    if not text:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(float(text)) if "e" in text.lower() else int(text.replace("_", ""))
    except ValueError:
        raise ImgcompError(f"{ENV_MAX_PIXELS}={text!r} is not a number of pixels") from None
    if value < 1:
        raise ImgcompError(f"{ENV_MAX_PIXELS} must be >= 1, got {value}")
    return value


def estimate_bytes(operation: str, width: int, height: int) -> int:
    """Peak memory one ``operation`` ("encode" or "decode") of a ``width`` x ``height`` image needs."""
    per_pixel = ENCODE_BYTES_PER_PIXEL if operation == "encode" else DECODE_BYTES_PER_PIXEL
    return BASE_BYTES + per_pixel * width * height


def physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return None


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB"


def check_image(operation: str, width: int, height: int, limit: int | None = None) -> None:
    """Refuse an ``operation`` on a ``width`` x ``height`` image beyond the limits, before any work."""
    pixels = width * height
    allowed = max_pixels(limit)
    needed = estimate_bytes(operation, width, height)
    if pixels > allowed:
        raise ImgcompError(
            f"cannot {operation} a {width}x{height} image ({pixels / 1e6:.1f} megapixels, about {_gb(needed)} "
            f"of memory): over the limit of {allowed / 1e6:.1f} megapixels (raise it with --max-pixels or "
            f"{ENV_MAX_PIXELS})"
        )
    total = physical_memory()
    if total is not None and needed > total:
        raise ImgcompError(
            f"cannot {operation} a {width}x{height} image: it needs about {_gb(needed)} of memory, "
            f"this machine has {_gb(total)}"
        )


def min_payload_bytes(width: int, height: int) -> int:
    """Fewest section bytes a version-4 file of this size may hold (images below 4096 pixels: 0)."""
    return width * height // PIXELS_PER_BYTE


_OUT_OF_MEMORY = ("not enough memory", "out of memory", "allocate memory", "defaultcpuallocator", "bad_alloc")


@contextmanager
def out_of_memory(operation: str, width: int, height: int) -> Iterator[None]:
    """Turn an allocation failure inside the block into the library's error."""
    try:
        yield
    except MemoryError:
        raise ImgcompError(
            f"out of memory while trying to {operation} a {width}x{height} image "
            f"(about {_gb(estimate_bytes(operation, width, height))} needed)"
        ) from None
    except RuntimeError as exc:
        text = str(exc).lower()
        if any(sign in text for sign in _OUT_OF_MEMORY):
            raise ImgcompError(
                f"out of memory while trying to {operation} a {width}x{height} image ({str(exc).splitlines()[0]})"
            ) from None
        raise
