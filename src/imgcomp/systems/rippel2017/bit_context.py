"""Adaptive arithmetic coding of the bitplanes (Rippel & Bourdev 2017, sec. 3.2.3), exact and vectorised.

The paper codes every bit with a probability from a classifier over its context: its bitplane,
its channel and bits already decoded around it. Ours keeps that structure but makes it fast and
exact on every machine:

* Order: magnitude bitplanes from the most significant; within a plane, the channels in
  ``channel_groups`` contiguous groups, each group coded at once (one push/pull of the range
  coder per plane and group); then the signs of the non-zero symbols.
* Context of a magnitude bit of channel c at (h, w) in plane p (``2^p`` weight), built from bits
  that are all known when the group is decoded:
  - ``self``: the value of its own higher planes, ``min(|q| >> (p+1), 2)`` (3 states);
  - ``nb``: how many of its 8 spatial neighbours in the same channel are already significant
    (non-zero higher planes), ``min(n, 3)`` (4 states);
  - ``act``: how many other channels at (h, w) are already significant, bucketed 0, 1, 2-3, 4+
    (4 states);
  - ``grp``: for the second and later groups, how many channels of earlier groups have a 1 in
    *this* plane at (h, w): 0, 1, 2+ (and a state of its own for the first group) (4 states);
  with the plane, the channel and the quality: ``qualities * planes * C * 192`` contexts.
  A sign's context: its channel and its magnitude (1, 2-3, 4+).
* The classifier is a table of 16-bit integer frequencies ``f0`` of a 0 per context, counted over
  training latents (:func:`table_from_counts`: each context's counts, smoothed towards its
  plane/channel's, so rare contexts borrow strength). A bit is coded with the probabilities
  ``(f0, 2^16 - f0) / 2^16``: dyadic, exact in float64, so encoder and decoder hand constriction
  bit-identical rows; no float arithmetic decides a probability at coding time.

Deliberately not in: adaptation of the table while an image is coded (a context is used by one
plane of one channel of one image, so per-image adaptation would need sequential coding).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from imgcomp.entropy import SymbolDecoder, SymbolEncoder
from imgcomp.errors import ImgcompError

FREQUENCY_BITS = 16
TOTAL = 1 << FREQUENCY_BITS
HALF = TOTAL // 2
STATES = 3 * 4 * 4 * 4  # self x nb x act x grp
SIGN_STATES = 3
_SELF_STATE = np.array([0, 64, 128], dtype=np.int32)  # own higher planes' value 0, 1, 2+
_NEIGHBOUR_STATE = np.array([0, 1, 2, 3, 3, 3, 3, 3, 3], dtype=np.int32) * 16  # significant neighbours 0..8
_ACTIVE_STATE = np.array([0, 1, 2, 2, 3], dtype=np.int32) * 4  # other significant channels 0, 1, 2-3, 4+
_SIGN_BUCKET = np.array([0, 0, 1, 1, 2], dtype=np.int64)  # |q| = 1, 2-3, 4+ (index min(|q|, 4))


def per_quality(config) -> int:
    return config.bits * config.latent_channels * STATES + config.latent_channels * SIGN_STATES


def table_size(config) -> int:
    """Contexts of a model: ``qualities * (planes * C * 192 + C * 3)``."""
    return config.qualities * per_quality(config)


def group_bounds(channels: int, groups: int) -> list[tuple[int, int]]:
    edges = [g * channels // groups for g in range(groups + 1)]
    return list(zip(edges[:-1], edges[1:]))


def plane_states(high: np.ndarray) -> np.ndarray:
    """``self * 64 + nb * 16 + act * 4`` (int32) of every position, from the higher planes'
    values ``high`` (N, C, h, w)."""
    significant = (high > 0).astype(np.int32)
    padded = np.pad(significant, ((0, 0), (0, 0), (1, 1), (1, 1)))
    rows = padded[..., :, :-2] + padded[..., :, 1:-1] + padded[..., :, 2:]
    neighbours = rows[..., :-2, :] + rows[..., 1:-1, :] + rows[..., 2:, :] - significant
    active = significant.sum(axis=1, keepdims=True, dtype=np.int32) - significant
    states = _SELF_STATE[np.minimum(high, 2)]
    states += _NEIGHBOUR_STATE[neighbours]
    states += _ACTIVE_STATE[np.minimum(active, 4)]
    return states


def _group_state(plane: np.ndarray, start: int) -> np.ndarray | int:
    if start == 0:
        return 0
    return 1 + np.minimum(plane[:, :start].sum(axis=1, keepdims=True, dtype=np.int32), 2)


def _magnitude_contexts(config, quality: int, p_index: int, start: int, stop: int, states: np.ndarray, grp) -> np.ndarray:
    channels = np.arange(start, stop, dtype=np.int64).reshape(1, -1, 1, 1)
    base = quality * per_quality(config) + (p_index * config.latent_channels + channels) * STATES
    contexts = states[:, start:stop] + base  # int64: a model's contexts may pass 2^31
    contexts += grp
    return contexts.ravel()


def _sign_contexts(config, quality: int, magnitude: np.ndarray) -> np.ndarray:
    channels = np.arange(config.latent_channels, dtype=np.int64).reshape(1, -1, 1, 1)
    base = quality * per_quality(config) + config.bits * config.latent_channels * STATES + channels * SIGN_STATES
    nonzero = magnitude > 0
    return np.broadcast_to(base, magnitude.shape)[nonzero] + _SIGN_BUCKET[np.minimum(magnitude[nonzero], 4)]


def coding_order(config, symbols: np.ndarray, quality: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(contexts, bits) of every push, in coding order, for symbols (N, C, h, w)."""
    q = np.asarray(symbols)
    magnitude = np.abs(q).astype(np.int32)
    planes = config.bits
    if magnitude.size and int(magnitude.max()) >= 2**planes:
        raise ImgcompError(f"symbol magnitude {int(magnitude.max())} does not fit {planes} bitplanes")
    for p_index in range(planes):
        shift = planes - 1 - p_index
        states = plane_states(magnitude >> (shift + 1))
        plane = (magnitude >> shift) & 1
        for start, stop in group_bounds(config.latent_channels, config.channel_groups):
            grp = _group_state(plane, start)
            yield _magnitude_contexts(config, quality, p_index, start, stop, states, grp), plane[:, start:stop].ravel()
    yield _sign_contexts(config, quality, magnitude), (q < 0)[magnitude > 0].astype(np.int32)


class CodingTable:
    """A table of ``f0`` with what coding needs precomputed: the coder's probability rows
    ``(f0, 2^16 - f0) / 2^16`` (exact dyadic float64) and each bit's cost in bits."""

    def __init__(self, f0: np.ndarray):
        f0 = np.asarray(f0, dtype=np.int64)
        if f0.size and (int(f0.min()) < 1 or int(f0.max()) > TOTAL - 1):
            raise ImgcompError("corrupt bit-context table: frequencies must lie in 1 .. 65535")
        self.f0 = f0
        self.rows = np.stack([f0, TOTAL - f0], axis=1).astype(np.float64) * 2.0**-FREQUENCY_BITS
        self.costs = FREQUENCY_BITS - np.log2(np.stack([f0, TOTAL - f0], axis=1).astype(np.float64))


def _coding_table(table) -> CodingTable:
    return table if isinstance(table, CodingTable) else CodingTable(table)


def ideal_bits(table, contexts: np.ndarray, bits: np.ndarray) -> float:
    """``sum -log2 P(bit)`` under the table (for reports and the rate controller; never coded)."""
    return float(_coding_table(table).costs[contexts, bits].sum())


def symbols_bits(config, table, symbols: np.ndarray, quality: int) -> float:
    """Ideal coding cost of symbols (N, C, h, w) at ``quality`` (0-based)."""
    table = _coding_table(table)
    return sum(ideal_bits(table, ctx, bits) for ctx, bits in coding_order(config, symbols, quality))


def encode(config, table, symbols: np.ndarray, quality: int, encoder: SymbolEncoder) -> float:
    """Push the bitplanes of symbols (C, h, w) into ``encoder`` (``table``: f0 array or
    :class:`CodingTable`); returns their ideal cost in bits."""
    table = _coding_table(table)
    total = 0.0
    for contexts, bits in coding_order(config, symbols[None], quality):
        if len(bits):
            encoder.push(bits, table.rows[contexts])
            total += ideal_bits(table, contexts, bits)
    return total


def decode(config, table, shape: tuple[int, int, int], quality: int, decoder: SymbolDecoder) -> np.ndarray:
    """Pull symbols of ``shape`` (C, h, w) from ``decoder``: the inverse of :func:`encode`."""
    table = _coding_table(table)
    planes = config.bits
    magnitude = np.zeros((1, *shape), dtype=np.int32)
    for p_index in range(planes):
        shift = planes - 1 - p_index
        states = plane_states(magnitude >> (shift + 1))
        plane = np.zeros_like(magnitude)
        for start, stop in group_bounds(config.latent_channels, config.channel_groups):
            contexts = _magnitude_contexts(config, quality, p_index, start, stop, states, _group_state(plane, start))
            plane[:, start:stop] = decoder.pull(table.rows[contexts]).reshape(plane[:, start:stop].shape)
        magnitude |= plane << shift
    contexts = _sign_contexts(config, quality, magnitude)
    symbols = magnitude.astype(np.int64)
    if len(contexts):
        negative = decoder.pull(table.rows[contexts]).astype(bool)
        symbols[magnitude > 0] = np.where(negative, -magnitude[magnitude > 0], magnitude[magnitude > 0])
    return symbols[0]


def count(config, symbols: np.ndarray, quality: int) -> np.ndarray:
    """Bit counts (contexts, 2) of symbols (N, C, h, w) at ``quality`` (0-based)."""
    size = table_size(config)
    counts = np.zeros(2 * size)
    for contexts, bits in coding_order(config, symbols, quality):
        counts += np.bincount(contexts * 2 + bits, minlength=2 * size)
    return counts.reshape(size, 2)


def table_from_counts(config, counts: np.ndarray, prior_weight: float = 4.0) -> np.ndarray:
    """Integer frequencies of a 0 (int32, in [1, 2^16 - 1]) per context: each context's counts,
    smoothed with ``prior_weight`` pseudo-counts at its plane/channel's (or sign channel's) rate."""
    counts = np.asarray(counts, dtype=np.float64).reshape(config.qualities, per_quality(config), 2)
    split = config.bits * config.latent_channels * STATES
    p0 = []
    for part, states in ((counts[:, :split], STATES), (counts[:, split:], SIGN_STATES)):
        grouped = part.reshape(config.qualities, -1, states, 2)
        coarse = grouped.sum(axis=2, keepdims=True)
        prior = (coarse[..., 0] + 1.0) / (coarse.sum(axis=-1) + 2.0)
        p0.append(((grouped[..., 0] + prior_weight * prior) / (grouped.sum(axis=-1) + prior_weight)).reshape(config.qualities, -1))
    probability = np.concatenate(p0, axis=1).ravel()
    return np.clip(np.rint(probability * TOTAL), 1, TOTAL - 1).astype(np.int32)
