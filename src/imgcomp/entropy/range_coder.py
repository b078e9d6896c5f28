"""The one place where model probabilities become range-coded bits.

Both the categorical context model of Mentzer et al. and a binary bit-context model (Rippel &
Bourdev, where ``L = 2``) drive the same queue: the encoder pushes batches of symbols with their
probability rows, the decoder pulls batches in the same first-in-first-out order with the same rows.
Probabilities are converted to the coder's integer frequencies only here, by constriction's
``Categorical(perfect=False)``; encoder and decoder must pass bit-identical float rows.
"""

from __future__ import annotations

import constriction
import numpy as np

from imgcomp.errors import ImgcompError

_MODEL_FAMILY = constriction.stream.model.Categorical(perfect=False)


def coder_probabilities(logits: np.ndarray) -> np.ndarray:
    """Rows of probabilities (float64, each summing to 1) from float logits of shape (N, L)."""
    rows = np.array(logits, dtype=np.float64)
    rows -= rows.max(axis=-1, keepdims=True)
    np.exp(rows, out=rows)
    rows /= rows.sum(axis=-1, keepdims=True)
    return rows


def uniform_probabilities(size: int) -> np.ndarray:
    """One row of equal probabilities over ``size`` symbols (for fields sent without a model)."""
    return np.full((1, size), 1.0 / size)


def ideal_bits(probabilities: np.ndarray, symbols: np.ndarray) -> float:
    """``sum -log2 p(symbol)``: what an ideal entropy coder would spend (eq. 13)."""
    chosen = probabilities[np.arange(len(symbols)), symbols]
    return float(-np.log2(np.maximum(chosen, np.finfo(np.float64).tiny)).sum())


class SymbolEncoder:
    """Collects batches of symbols and codes them into 32-bit words."""

    def __init__(self) -> None:
        self._coder = constriction.stream.queue.RangeEncoder()

    def push(self, symbols: np.ndarray, probabilities: np.ndarray) -> None:
        self._coder.encode(symbols.astype(np.int32, copy=False), _MODEL_FAMILY, probabilities)

    def finish(self) -> bytes:
        return self._coder.get_compressed().astype("<u4").tobytes()


class SymbolDecoder:
    """Pulls batches of symbols back out, given the same probability rows as the encoder."""

    def __init__(self, payload: bytes) -> None:
        if len(payload) % 4:
            raise ImgcompError("corrupt payload: length is not a whole number of 32-bit words")
        words = np.frombuffer(payload, dtype="<u4").astype(np.uint32)
        try:
            self._coder = constriction.stream.queue.RangeDecoder(words)
        except Exception as exc:  # constriction rejects some malformed streams up front
            raise ImgcompError(f"corrupt payload ({exc})") from None

    def pull(self, probabilities: np.ndarray) -> np.ndarray:
        try:
            return np.asarray(self._coder.decode(_MODEL_FAMILY, probabilities), dtype=np.int64)
        except Exception as exc:
            raise ImgcompError(f"corrupt payload ({exc})") from None
