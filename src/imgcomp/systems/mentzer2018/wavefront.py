"""Fast causal coding with the 3-D context model: one wavefront of symbols per step.

With the masks of :mod:`imgcomp.systems.mentzer2018.context_model`, every tap of every layer points from a
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
batch shapes, so their probabilities are bit-identical (the determinism rule of docs/format.md); a
change to this arithmetic needs a new stream version (:data:`.stream.STREAM_VERSION`).

The decoder must go step by step: a step needs the symbols of the one before. The encoder knows
every symbol up front, so it runs layer by layer instead: a layer's products for all steps depend
only on the previous layer, and are split into a few runs of consecutive steps computed in
parallel threads (numpy releases the GIL in its gathers and products). Every step is still one
product of the decoder's shape on one BLAS thread, so the numbers do not change.
"""

from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Callable, Iterator

import numpy as np
import torch

from imgcomp.entropy.blas import single_threaded_blas
from imgcomp.entropy.range_coder import SymbolDecoder, SymbolEncoder, coder_probabilities, ideal_bits
from imgcomp.systems.mentzer2018.context_model import ContextModel3D, MaskedConv3d

WAVEFRONT_WEIGHTS = (4, 2, 1)  # t = 4c + 2h + w

_workers: ThreadPoolExecutor | None = None
_workers_lock = threading.Lock()


def _run_in_parallel(tasks: list[Callable[[], None]]) -> None:
    """Run the tasks, the first in the calling thread and the others in a shared thread pool."""
    global _workers
    futures = []
    if len(tasks) > 1:
        with _workers_lock:
            if _workers is None:
                _workers = ThreadPoolExecutor(max(1, (os.cpu_count() or 2) - 1), "imgcomp-wavefront")
        futures = [_workers.submit(task) for task in tasks[1:]]
    try:
        tasks[0]()
    finally:
        wait(futures)
    for future in futures:
        future.result()


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

    def __init__(self, model: ContextModel3D, symbol_inputs: torch.Tensor, shape: tuple[int, int, int]):
        """``symbol_inputs`` is what P reads for each symbol: ``(S, F)`` features, or ``(S,)`` values."""
        self.shape = shape
        K, H, W = shape
        inputs = symbol_inputs.detach().float()
        self.symbol_inputs = (inputs[:, None] if inputs.dim() == 1 else inputs).numpy()
        self.num_symbols = self.symbol_inputs.shape[0]
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
    def _scratch(self, workspaces: int = 1) -> Iterator[tuple[list[np.ndarray], list[np.ndarray]]]:
        """Activation buffers (values, h1, h2, h3) and gather workspaces (one per thread), reused
        across calls: fresh tens of MB cost more in page faults than a small image's coding pass.

        Reuse is safe because a step only reads row 0 (zero, never written) and rows that this
        call has already written; each concurrent caller gets its own set.
        """
        with self._pool_lock:
            scratch = self._pool.pop() if self._pool else None
        if scratch is None:
            rows = int(np.prod(self.shape)) + 1
            scratch = (
                [np.zeros((rows, self.symbol_inputs.shape[1]), np.float32)] + [np.zeros((rows, ch), np.float32) for ch in self.channels[:3]],
                [],
            )
        widest = max(
            self.first_rows.shape[1] * self.symbol_inputs.shape[1], self.later_rows.shape[1] * max(self.channels[:3])
        )
        while len(scratch[1]) < workspaces:
            scratch[1].append(np.empty(self.largest_step * widest, np.float32))
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

    def layer_step(self, layer: int, buffers: list[np.ndarray], workspace: np.ndarray, step: int) -> np.ndarray | None:
        """One masked convolution at one wavefront's positions.

        Layers 0-2 write their activations into ``buffers[layer + 1]`` (layer 2 adds the residual,
        ``h1``); layer 3 returns the logits (n, L).
        """
        lo, hi = self.bounds[step], self.bounds[step + 1]
        taps = self.first_rows if layer == 0 else self.later_rows
        inputs = self._gather(buffers[layer], taps[lo:hi], workspace)
        if layer == 3:
            logits = inputs @ self.weights[3]
            logits += self.biases[3]
            return logits[:, : self.num_symbols]
        rows = self._rows(step)
        out = buffers[layer + 1][rows]
        np.matmul(inputs, self.weights[layer], out=out)
        out += self.biases[layer]
        if layer < 2:
            np.maximum(out, 0, out=out)
        else:
            out += buffers[1][rows]
        return None

    def step_logits(self, buffers: list[np.ndarray], workspace: np.ndarray, step: int) -> np.ndarray:
        """Logits (n, L) of the symbols of one wavefront; fills that wavefront's activations."""
        for layer in range(3):
            self.layer_step(layer, buffers, workspace, step)
        return self.layer_step(3, buffers, workspace, step)

    def _step_runs(self, threads: int) -> list[range]:
        """Consecutive steps split into ``threads`` runs of about the same number of symbols."""
        cuts = np.searchsorted(self.bounds, np.linspace(0, self.bounds[-1], threads + 1)[1:-1])
        edges = [0, *sorted(set(int(c) for c in cuts) - {0, self.num_steps}), self.num_steps]
        return [range(a, b) for a, b in zip(edges[:-1], edges[1:])]

    def all_logits(self, symbols: torch.Tensor) -> torch.Tensor:
        """Logits (L, K, H, W) of every symbol, computed wavefront by wavefront (for tests)."""
        out = np.empty((int(np.prod(self.shape)), self.num_symbols), np.float32)
        with self._scratch() as (buffers, workspaces), single_threaded_blas():
            buffers[0][1:] = self.symbol_inputs[symbols.numpy().ravel()[self.raster_order]]
            for step in range(self.num_steps):
                out[self.raster_order[self.bounds[step] : self.bounds[step + 1]]] = self.step_logits(
                    buffers, workspaces[0], step)
        return torch.from_numpy(out.T.reshape(-1, *self.shape).copy())

    def encode(self, symbols: torch.Tensor, encoder: SymbolEncoder, threads: int | None = None) -> float:
        """Code a (K, H, W) volume of symbol indices; returns the ideal cost in bits.

        All values are known, so they are written up front and the layers run one after another
        over all steps, in ``threads`` threads (default: torch's thread count). A step only reads
        rows of earlier steps, exactly the ones the decoder has filled in when it gets there.
        """
        ordered = symbols.numpy().ravel()[self.raster_order]
        runs = self._step_runs(max(1, threads if threads is not None else torch.get_num_threads()))
        probabilities = np.empty((ordered.size, self.num_symbols), np.float64)
        bits = np.zeros(self.num_steps)
        with self._scratch(len(runs)) as (buffers, workspaces), single_threaded_blas():
            buffers[0][1:] = self.symbol_inputs[ordered]

            def run_layer(layer: int, steps: range, workspace: np.ndarray) -> None:
                for step in steps:
                    logits = self.layer_step(layer, buffers, workspace, step)
                    if logits is not None:
                        lo, hi = self.bounds[step], self.bounds[step + 1]
                        probabilities[lo:hi] = coder_probabilities(logits)
                        bits[step] = ideal_bits(probabilities[lo:hi], ordered[lo:hi])

            for layer in range(4):
                _run_in_parallel([
                    lambda layer=layer, steps=steps, workspace=workspace: run_layer(layer, steps, workspace)
                    for steps, workspace in zip(runs, workspaces)
                ])
        encoder.push(ordered, probabilities)  # one symbol after another, as the decoder pulls them
        return float(bits.sum())

    def decode(self, decoder: SymbolDecoder) -> torch.Tensor:
        """Decode a (K, H, W) volume of symbol indices."""
        ordered = np.empty(int(np.prod(self.shape)), np.int64)
        with self._scratch() as (buffers, workspaces), single_threaded_blas():
            for step in range(self.num_steps):
                logits = self.step_logits(buffers, workspaces[0], step)
                decoded = decoder.pull(coder_probabilities(logits))
                ordered[self.bounds[step] : self.bounds[step + 1]] = decoded
                buffers[0][self._rows(step)] = self.symbol_inputs[decoded]
        symbols = np.empty_like(ordered)
        symbols[self.raster_order] = ordered
        return torch.from_numpy(symbols).view(self.shape)
