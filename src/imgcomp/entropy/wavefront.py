"""Fast causal coding with the 3-D context model: one wavefront of symbols per step.

With the masks of :mod:`imgcomp.models.context_model`, every tap of every layer points from a
symbol (c, h, w) to positions with a smaller or (for the "B" layers) equal value of
``t = 4c + 2h + w``, and the first layer's taps to strictly smaller ``t``. So all symbols with the
same ``t`` depend only on symbols of earlier wavefronts and can be decoded together:
``4(K-1) + 2(H-1) + W`` steps instead of ``K*H*W`` (about 350 instead of 196,608 for a 768x512 image).

Each step evaluates the four masked convolutions only at that wavefront's positions: one gather of
each layer's kept taps from cached activations of earlier steps and one matrix product. The
activations are stored in schedule order (row ``1 + i`` holds the ``i``-th symbol of the schedule,
row 0 is the zero padding), so a step writes one contiguous block of rows and reads from the few
steps just before it, which stay in the CPU cache. The products run in numpy's BLAS on one thread
(faster than torch's for these shapes). Encoder and decoder run exactly this code with the same
batch shapes, so their probabilities are bit-identical (the determinism rule of DESIGN.md); a
change to this arithmetic needs a new ``bitstream.FORMAT_VERSION``.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator

import numpy as np
import torch
from threadpoolctl import ThreadpoolController

from imgcomp.entropy.range_coder import SymbolDecoder, SymbolEncoder, coder_probabilities, ideal_bits
from imgcomp.models.context_model import ContextModel3D, MaskedConv3d

WAVEFRONT_WEIGHTS = (4, 2, 1)  # t = 4c + 2h + w

_blas_lock = threading.Lock()
_blas_users = 0
_blas_limiter = None  # threadpoolctl's limiter while any coder runs
_threadpools: ThreadpoolController | None = None


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Keep the BLAS behind numpy on one thread while any wavefront runs in this process.

    OpenBLAS gives different float results for the same product on 1 and 2 threads (and gains
    nothing at these sizes), so without this the probabilities would depend on the machine's or
    the caller's thread count. The limit is process-wide: it is set when the first coder starts and
    lifted when the last one ends, so coders in several Python threads do not undo each other's.
    """
    global _blas_users, _blas_limiter, _threadpools
    with _blas_lock:
        if _blas_users == 0:
            if _threadpools is None:  # finding the loaded libraries takes milliseconds: once
                _threadpools = ThreadpoolController()
            _blas_limiter = _threadpools.limit(limits=1, user_api="blas")
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0:
                _blas_limiter.restore_original_limits()
                _blas_limiter = None


def wavefront_index(c, h, w):
    """The decoding step of symbol (c, h, w)."""
    return WAVEFRONT_WEIGHTS[0] * c + WAVEFRONT_WEIGHTS[1] * h + WAVEFRONT_WEIGHTS[2] * w


def _tap_matrix(layer: MaskedConv3d, columns: int) -> tuple[np.ndarray, np.ndarray]:
    """The kept taps of a masked convolution as one (taps * C_in, columns) matrix and its bias,
    zero-padded from C_out to ``columns`` outputs."""
    weight = layer.weight.detach().float()
    taps = torch.stack([weight[:, :, dc + 1, dh + 1, dw + 1] for dc, dh, dw in layer.taps()])
    matrix = np.zeros((len(layer.taps()) * layer.in_channels, columns), np.float32)
    matrix[:, : layer.out_channels] = taps.permute(0, 2, 1).reshape(-1, layer.out_channels).numpy()
    bias = np.zeros(columns, np.float32)
    bias[: layer.out_channels] = layer.bias.detach().float().numpy()
    return matrix, bias


class WavefrontContextModel:
    """Evaluates a :class:`ContextModel3D` wavefront by wavefront over a (K, H, W) volume."""

    def __init__(self, model: ContextModel3D, centers: torch.Tensor, shape: tuple[int, int, int]):
        self.shape = shape
        K, H, W = shape
        self.centers = centers.detach().float().numpy()
        self.num_centers = self.centers.size
        layers = model.layers()
        if any(layer.taps() != layers[1].taps() for layer in layers[2:]):
            raise ValueError("the later context-model layers must share one mask")
        # The logits layer is padded to 8 outputs: BLAS is much slower with 6 columns than with 8.
        widths = [layer.out_channels for layer in layers[:3]] + [-(-layers[3].out_channels // 8) * 8]
        self.weights, self.biases = zip(*(_tap_matrix(layer, n) for layer, n in zip(layers, widths)))
        self.channels = [layer.out_channels for layer in layers]

        c, h, w = np.indices(shape, dtype=np.intp).reshape(3, -1)
        steps = wavefront_index(c, h, w)
        order = np.argsort(steps, kind="stable")
        self.raster_order = order  # position i of the schedule is raster index order[i]
        counts = np.bincount(steps)
        counts = counts[counts > 0]  # small volumes leave some values of t empty
        self.bounds = [0] + np.cumsum(counts).tolist()
        self.largest_step = int(counts.max()) if counts.size else 0

        # Buffer row of every position, in a volume padded with row 0; then, once for all
        # steps, the rows every symbol's kept taps read.
        rows = np.zeros((K + 2, H + 2, W + 2), np.intp)
        in_schedule_order = np.empty(K * H * W, np.intp)
        in_schedule_order[order] = np.arange(1, K * H * W + 1)
        rows[1:-1, 1:-1, 1:-1] = in_schedule_order.reshape(shape)
        rows = rows.ravel()
        centre = ((c[order] + 1) * (H + 2) + h[order] + 1) * (W + 2) + w[order] + 1

        def tap_rows(taps: list[tuple[int, int, int]]) -> np.ndarray:
            offsets = np.array([(dc * (H + 2) + dh) * (W + 2) + dw for dc, dh, dw in taps], np.intp)
            return rows[centre[:, None] + offsets[None, :]]

        self.first_rows = tap_rows(layers[0].taps())
        self.later_rows = tap_rows(layers[1].taps())
        self._pool: list[tuple[list[np.ndarray], np.ndarray]] = []
        self._pool_lock = threading.Lock()

    @property
    def num_steps(self) -> int:
        return len(self.bounds) - 1

    @contextlib.contextmanager
    def _scratch(self) -> Iterator[tuple[list[np.ndarray], np.ndarray]]:
        """Activation buffers (values, h1, h2, h3) and a gather workspace, reused across calls:
        fresh tens of MB cost more in page faults than a small image's whole coding pass.

        Reuse is safe because a step only reads row 0 (zero, never written) and rows that this
        call has already written; each concurrent caller gets its own set.
        """
        with self._pool_lock:
            scratch = self._pool.pop() if self._pool else None
        if scratch is None:
            rows = int(np.prod(self.shape)) + 1
            widest = max(self.first_rows.shape[1], self.later_rows.shape[1] * max(self.channels[:3]))
            scratch = (
                [np.zeros((rows, 1), np.float32)] + [np.zeros((rows, ch), np.float32) for ch in self.channels[:3]],
                np.empty(self.largest_step * widest, np.float32),
            )
        try:
            yield scratch
        finally:
            with self._pool_lock:
                self._pool.append(scratch)

    @staticmethod
    def _gather(source: np.ndarray, rows: np.ndarray, workspace: np.ndarray) -> np.ndarray:
        out = workspace[: rows.size * source.shape[1]].reshape(rows.size, source.shape[1])
        np.take(source, rows.ravel(), axis=0, out=out, mode="clip")  # rows are valid; "clip" skips the check
        return out.reshape(rows.shape[0], -1)

    def _rows(self, step: int) -> slice:
        """The buffer rows of one wavefront's symbols."""
        return slice(self.bounds[step] + 1, self.bounds[step + 1] + 1)

    def step_logits(self, buffers: list[np.ndarray], workspace: np.ndarray, step: int) -> np.ndarray:
        """Logits (n, L) of the symbols of one wavefront; fills that wavefront's activations."""
        values, h1, h2, h3 = buffers
        lo, hi = self.bounds[step], self.bounds[step + 1]
        first, later = self.first_rows[lo:hi], self.later_rows[lo:hi]
        w1, w2, w3, w4 = self.weights
        b1, b2, b3, b4 = self.biases
        rows = self._rows(step)
        a1, a2, a3 = h1[rows], h2[rows], h3[rows]
        np.matmul(self._gather(values, first, workspace), w1, out=a1)
        a1 += b1
        np.maximum(a1, 0, out=a1)
        np.matmul(self._gather(h1, later, workspace), w2, out=a2)
        a2 += b2
        np.maximum(a2, 0, out=a2)
        np.matmul(self._gather(h2, later, workspace), w3, out=a3)
        a3 += b3
        a3 += a1
        logits = self._gather(h3, later, workspace) @ w4
        logits += b4
        return logits[:, : self.num_centers]

    def all_logits(self, symbols: torch.Tensor) -> torch.Tensor:
        """Logits (L, K, H, W) of every symbol, computed wavefront by wavefront (for tests)."""
        out = np.empty((int(np.prod(self.shape)), self.num_centers), np.float32)
        with self._scratch() as (buffers, workspace), single_threaded_blas():
            buffers[0][1:, 0] = self.centers[symbols.numpy().ravel()[self.raster_order]]
            for step in range(self.num_steps):
                out[self.raster_order[self.bounds[step] : self.bounds[step + 1]]] = self.step_logits(
                    buffers, workspace, step)
        return torch.from_numpy(out.T.reshape(-1, *self.shape).copy())

    def encode(self, symbols: torch.Tensor, encoder: SymbolEncoder) -> float:
        """Code a (K, H, W) volume of symbol indices; returns the ideal cost in bits.

        All values are known, so they are written up front: a step only reads rows of earlier
        steps, exactly the ones the decoder has filled in by then.
        """
        ordered = symbols.numpy().ravel()[self.raster_order]
        bits = 0.0
        with self._scratch() as (buffers, workspace), single_threaded_blas():
            buffers[0][1:, 0] = self.centers[ordered]
            for step in range(self.num_steps):
                probabilities = coder_probabilities(self.step_logits(buffers, workspace, step))
                batch = ordered[self.bounds[step] : self.bounds[step + 1]]
                encoder.push(batch, probabilities)
                bits += ideal_bits(probabilities, batch)
        return bits

    def decode(self, decoder: SymbolDecoder) -> torch.Tensor:
        """Decode a (K, H, W) volume of symbol indices."""
        ordered = np.empty(int(np.prod(self.shape)), np.int64)
        with self._scratch() as (buffers, workspace), single_threaded_blas():
            for step in range(self.num_steps):
                decoded = decoder.pull(coder_probabilities(self.step_logits(buffers, workspace, step)))
                ordered[self.bounds[step] : self.bounds[step + 1]] = decoded
                buffers[0][self._rows(step), 0] = self.centers[decoded]
        symbols = np.empty_like(ordered)
        symbols[self.raster_order] = ordered
        return torch.from_numpy(symbols).view(self.shape)
