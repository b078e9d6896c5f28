"""Sec. 3.2.1-3.2.2 of Rippel & Bourdev 2017: quantisation to B bits and bitplane decomposition.

Features ``y`` in [-1, 1] are quantised to integers ``q = round(y / s)`` with the bin size
``s = 2^-(B-1) * m`` (``m >= 1`` a per-quality, per-channel step multiplier; ``m = 1`` is the
paper's B-bit quantisation, ``|q| <= 2^(B-1)``). The gradient passes straight through the rounding.
The integers are then split into binary planes, either magnitude bitplanes (most significant first)
plus a sign plane, or bitplanes of the offset values ``q + offset`` (both exactly invertible).
"""

from __future__ import annotations

import numpy as np
import torch


def quantise(y: torch.Tensor, step: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(``q``, ``y_hat``): the integers ``round(y / step)`` with a straight-through gradient (in
    symbol units, for the rate penalty) and the dequantised ``y_hat = q * step`` the decoder sees."""
    scaled = y / step
    q = scaled + (torch.round(scaled) - scaled).detach()
    return q, q * step


def magnitude_planes(bits: int) -> int:
    """Magnitude bitplanes of B-bit symbols (``|q| <= 2^(B-1)`` needs B planes)."""
    return bits


def to_bitplanes(q: np.ndarray, planes: int) -> tuple[np.ndarray, np.ndarray]:
    """(magnitude planes ``(planes, *q.shape)``, most significant first; sign plane, 1 where q < 0)."""
    q = np.asarray(q, dtype=np.int64)
    magnitude = np.abs(q)
    if magnitude.size and int(magnitude.max()) >= 2**planes:
        raise ValueError(f"|q| = {int(magnitude.max())} does not fit {planes} bitplanes")
    shifts = np.arange(planes - 1, -1, -1).reshape((planes,) + (1,) * q.ndim)
    return ((magnitude[None] >> shifts) & 1).astype(np.uint8), (q < 0).astype(np.uint8)


def from_bitplanes(magnitude: np.ndarray, sign: np.ndarray) -> np.ndarray:
    """The exact inverse of :func:`to_bitplanes`."""
    planes = magnitude.shape[0]
    weights = (1 << np.arange(planes - 1, -1, -1, dtype=np.int64)).reshape((planes,) + (1,) * (magnitude.ndim - 1))
    value = (magnitude.astype(np.int64) * weights).sum(axis=0)
    return np.where(sign.astype(bool), -value, value)


def to_offset_bitplanes(q: np.ndarray, planes: int, offset: int) -> np.ndarray:
    """Bitplanes (most significant first) of ``q + offset``, which must lie in [0, 2^planes)."""
    v = np.asarray(q, dtype=np.int64) + offset
    if v.size and (int(v.min()) < 0 or int(v.max()) >= 2**planes):
        raise ValueError(f"q + {offset} does not fit {planes} bitplanes")
    shifts = np.arange(planes - 1, -1, -1).reshape((planes,) + (1,) * v.ndim)
    return ((v[None] >> shifts) & 1).astype(np.uint8)


def from_offset_bitplanes(planes_array: np.ndarray, offset: int) -> np.ndarray:
    """The exact inverse of :func:`to_offset_bitplanes`."""
    planes = planes_array.shape[0]
    weights = (1 << np.arange(planes - 1, -1, -1, dtype=np.int64)).reshape((planes,) + (1,) * (planes_array.ndim - 1))
    return (planes_array.astype(np.int64) * weights).sum(axis=0) - offset
