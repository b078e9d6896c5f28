"""Coding a (K, H, W) symbol volume with the integer-exact P, one wavefront per decoding step.

The same schedule as the float coder (:mod:`imgcomp.entropy.wavefront`): symbol (c, h, w) is
decoded at step ``t = 4c + 2h + w``; activations live in buffers in schedule order (row 0 is the
zero padding), each step gathers the kept taps of its symbols and does one product per layer. The
arithmetic is :mod:`imgcomp.systems.mentzer2018.integer_context.model`'s: integer values held in float32 or float64,
every result exact, so nothing depends on the BLAS kernel, its thread count or the batch shapes. That frees the
encoder from mirroring the decoder's steps: it computes each layer for all positions in a few
large chunks (in threads), which is faster, and gets the very same integers.

numpy and threadpoolctl only; no torch.
"""

from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator, Protocol

import numpy as np

from imgcomp.entropy.blas import single_threaded_blas
from imgcomp.systems.mentzer2018.integer_context.model import (
    WAVEFRONT_WEIGHTS, FastLayer, IntegerContextParams, frequencies_float, ideal_bits,
)

ENCODE_CHUNK = 2048  # rows per product in the encoder's layer-by-layer pass (8192: 2x slower, cache misses)

class SymbolSink(Protocol):
    def push(self, symbols: np.ndarray, probabilities: np.ndarray) -> None: ...


class SymbolSource(Protocol):
    def pull(self, probabilities: np.ndarray) -> np.ndarray: ...


class IntegerWavefrontContextModel:
    """The integer P evaluated over one (K, H, W) volume shape.

    ``encode(symbols, encoder)`` and ``decode(decoder)`` drive the range coder through its
    ``push(symbols, probabilities)`` / ``pull(probabilities)`` interface
    (:class:`imgcomp.entropy.range_coder.SymbolEncoder` / ``SymbolDecoder``), with probability rows
    ``f / 2**16`` that are exact on every machine.
    """

    def __init__(self, params: IntegerContextParams, shape: tuple[int, int, int], dtype: type | None = None):
        """``dtype``: force float64 (e.g. on a platform whose sgemm is not IEEE float32, such as a
        BLAS that rounds to bfloat16/TF32 internally); float32 is allowed only where the bounds
        permit. The results are the same integers either way."""
        params.check()
        self.params = params
        self.dtype = params.compute_dtype() if dtype is None else np.dtype(dtype).type
        if self.dtype not in (np.float32, np.float64) or (self.dtype == np.float32 and params.compute_dtype() != np.float32):
            raise ValueError(f"dtype {dtype} cannot hold this model's sums exactly")
        self.layers = [FastLayer(layer, self.dtype) for layer in params.layers]
        self.shape = tuple(int(s) for s in shape)
        K, H, W = self.shape
        self.inputs_f = params.inputs.astype(self.dtype)
        self.table = params.table.astype(np.float64)
        self.scale = 2.0**-params.frequency_bits
        self._pool: list[list[np.ndarray]] = []
        self._pool_lock = threading.Lock()
        self._local = threading.local()
        self.num_symbols = params.num_symbols
        self.channels = params.channels
        c, h, w = np.indices(self.shape, dtype=np.intp).reshape(3, -1)
        steps = WAVEFRONT_WEIGHTS[0] * c + WAVEFRONT_WEIGHTS[1] * h + WAVEFRONT_WEIGHTS[2] * w
        order = np.argsort(steps, kind="stable")
        self.raster_order = order
        counts = np.bincount(steps) if steps.size else np.zeros(0, np.intp)
        counts = counts[counts > 0]
        self.bounds = [0] + np.cumsum(counts).tolist()
        self.largest_step = int(counts.max()) if counts.size else 0
        rows = np.zeros((K + 2, H + 2, W + 2), np.intp)
        in_schedule = np.empty(K * H * W, np.intp)
        in_schedule[order] = np.arange(1, K * H * W + 1)
        rows[1:-1, 1:-1, 1:-1] = in_schedule.reshape(self.shape)
        rows = rows.ravel()
        centre = ((c + 1) * (H + 2) + h + 1) * (W + 2) + w + 1

        def tap_rows(taps):
            # gathered in raster order (neighbours are near in memory), then rows put in schedule order
            offsets = np.array([(dc * (H + 2) + dh) * (W + 2) + dw for dc, dh, dw in taps], np.intp)
            return np.take(rows[centre[:, None] + offsets[None, :]], order, axis=0)

        self.first_rows = tap_rows(params.taps(0))
        self.later_rows = tap_rows(params.taps(1))

    @property
    def num_steps(self) -> int:
        return len(self.bounds) - 1

    @contextlib.contextmanager
    def _buffers(self) -> Iterator[list[np.ndarray]]:
        """Activation buffers (inputs, h1, h2, h3) in schedule order, reused across calls (fresh tens
        of MB cost page faults). Reuse is safe: a step reads only row 0 (zeros, never written) and
        rows this call has written before."""
        with self._pool_lock:
            buffers = self._pool.pop() if self._pool else None
        if buffers is None:
            n = int(np.prod(self.shape)) + 1
            buffers = [np.zeros((n, self.inputs_f.shape[1]), self.dtype)] + [
                np.zeros((n, ch), self.dtype) for ch in self.channels[:3]]
        try:
            yield buffers
        finally:
            with self._pool_lock:
                self._pool.append(buffers)

    def _frequencies(self, logits: np.ndarray) -> np.ndarray:
        return frequencies_float(logits, self.table, self.params.frequency_bits)

    def _layer(self, layer: int, buffers: list[np.ndarray], lo: int, hi: int) -> np.ndarray | None:
        """Layer ``layer`` at schedule positions lo..hi-1: writes buffers[layer + 1] rows
        lo+1..hi (layers 0-2) or returns the integer logits (layer 3) as float64."""
        spec = self.layers[layer]
        taps = (self.first_rows if layer == 0 else self.later_rows)[lo:hi]
        source = buffers[layer]
        workspace = self._workspace(taps.size * source.shape[1])
        gathered = workspace[: taps.size * source.shape[1]].reshape(taps.size, source.shape[1])
        np.take(source, taps.ravel(), axis=0, out=gathered, mode="clip")  # rows are valid; "clip" skips the check
        gathered = gathered.reshape(hi - lo, -1)
        if layer == 3:
            y = gathered @ spec.weight  # exact: see imgcomp.systems.mentzer2018.integer_context.model
        else:
            y = buffers[layer + 1][lo + 1 : hi + 1]
            np.matmul(gathered, spec.weight, out=y)
        y += spec.bias
        np.floor(y, out=y)
        if layer == 3:
            np.clip(y, spec.low, spec.high, out=y)
            return y
        if layer == 2:
            y += buffers[1][lo + 1 : hi + 1]
            np.clip(y, spec.low, spec.high, out=y)
        else:
            np.clip(y, 0, spec.high, out=y)
        return None

    def _workspace(self, size: int) -> np.ndarray:
        """A gather buffer of this thread, grown as needed (fresh arrays of MBs cost page faults)."""
        workspace = getattr(self._local, "workspace", None)
        if workspace is None or workspace.size < size:
            workspace = self._local.workspace = np.empty(size, self.dtype)
        return workspace

    def step_frequencies(self, buffers: list[np.ndarray], step: int) -> np.ndarray:
        return self.rows_frequencies(buffers, self.bounds[step], self.bounds[step + 1])

    def all_frequencies(self, symbols: np.ndarray, threads: int | None = None, by_step: bool = False) -> np.ndarray:
        """Frequencies (K*H*W, L) of every symbol in schedule order (float64 holding integers). ``by_step`` runs the
        decoder's step-by-step computation instead of the encoder's chunks (for tests)."""
        ordered = np.asarray(symbols).ravel()[self.raster_order]
        n = ordered.size
        out = np.empty((n, self.num_symbols), np.float64)
        with self._buffers() as buffers, single_threaded_blas():
            buffers[0][1:] = self.inputs_f[ordered]
            if by_step:
                for step in range(self.num_steps):
                    out[self.bounds[step] : self.bounds[step + 1]] = self.step_frequencies(buffers, step)
                return out
            chunks = [(lo, min(n, lo + ENCODE_CHUNK)) for lo in range(0, n, ENCODE_CHUNK)]
            threads = max(1, threads or 1)  # threads: measured slower on a loaded 2-core machine; opt in
            with ThreadPoolExecutor(threads) if threads > 1 and len(chunks) > 1 else contextlib.nullcontext() as pool:
                for layer in range(4):
                    def work(chunk, layer=layer):
                        lo, hi = chunk
                        logits = self._layer(layer, buffers, lo, hi)
                        if logits is not None:
                            out[lo:hi] = self._frequencies(logits)

                    if pool is None:
                        for chunk in chunks:
                            work(chunk)
                    else:
                        list(pool.map(work, chunks))
        return out

    def logits_raster(self, symbols: np.ndarray) -> np.ndarray:
        """Integer logits (K, H, W, L) of every symbol (for tests against the reference)."""
        ordered = np.asarray(symbols).ravel()[self.raster_order]
        n = ordered.size
        logits = np.empty((n, self.num_symbols), self.dtype)
        with self._buffers() as buffers, single_threaded_blas():
            buffers[0][1:] = self.inputs_f[ordered]
            for step in range(self.num_steps):
                lo, hi = self.bounds[step], self.bounds[step + 1]
                for layer in range(3):
                    self._layer(layer, buffers, lo, hi)
                logits[lo:hi] = self._layer(3, buffers, lo, hi)
        out = np.empty_like(logits)
        out[self.raster_order] = logits
        return out.reshape(*self.shape, -1).astype(np.int64)

    def encode(self, symbols: np.ndarray, encoder: SymbolSink, threads: int | None = None) -> float:
        """Code a (K, H, W) volume of symbol indices (numpy or torch CPU tensor); returns the ideal
        cost in bits under the integer frequencies."""
        symbols = np.asarray(symbols, dtype=np.int64)
        if symbols.shape != self.shape:
            raise ValueError(f"symbols have shape {symbols.shape}, expected {self.shape}")
        ordered = symbols.ravel()[self.raster_order]
        freqs = self.all_frequencies(symbols, threads)
        bits = ideal_bits(freqs, ordered, self.params.frequency_bits)
        freqs *= self.scale  # f / 2**16: exact
        encoder.push(ordered, freqs)
        return bits

    def rows_frequencies(self, buffers: list[np.ndarray], lo: int, hi: int) -> np.ndarray:
        """Frequencies of schedule positions lo..hi-1 of one step: all four layers of just these rows.
        Within a step rows are independent (every tap but the centre lies in an earlier step), so
        a step's rows may be split among threads."""
        for layer in range(3):
            self._layer(layer, buffers, lo, hi)
        return self._frequencies(self._layer(3, buffers, lo, hi))

    def decode(self, decoder: SymbolSource, threads: int | None = None) -> np.ndarray:
        """Decode a (K, H, W) volume of symbol indices (int64 numpy array). ``threads`` (default: 2
        where the machine has 2 cores or more) share each step's rows; the range decoder pulls each
        step's symbols in order, so the result is the same for any thread count."""
        if threads is None:
            threads = DECODE_THREADS
        ordered = np.empty(int(np.prod(self.shape)), np.int64)
        with self._buffers() as buffers, single_threaded_blas(), _HalfWorker(self, buffers) if threads > 1 else contextlib.nullcontext() as helper:
            for step in range(self.num_steps):
                lo, hi = self.bounds[step], self.bounds[step + 1]
                if helper is not None and hi - lo >= max(2, SPLIT_MIN_ROWS):
                    mid = (lo + hi) // 2
                    helper.start(mid, hi)
                    first = self.rows_frequencies(buffers, lo, mid)
                    freqs = np.concatenate([first, helper.result()])
                else:
                    freqs = self.rows_frequencies(buffers, lo, hi)
                freqs *= self.scale  # f / 2**16: exact
                decoded = np.asarray(decoder.pull(freqs), np.int64)
                ordered[lo:hi] = decoded
                buffers[0][lo + 1 : hi + 1] = self.inputs_f[decoded]
        symbols = np.empty_like(ordered)
        symbols[self.raster_order] = ordered
        return symbols.reshape(self.shape)


DECODE_THREADS = min(2, os.cpu_count() or 1)
SPLIT_MIN_ROWS = 128  # steps with fewer rows run on one thread (handing over costs more than it saves)


class _HalfWorker:
    """A second thread computing the second half of each step's rows (numpy releases the GIL in
    its products). ``start(lo, hi)`` hands it rows, ``result()`` waits for their frequencies."""

    def __init__(self, model: IntegerWavefrontContextModel, buffers: list[np.ndarray]):
        self.model, self.buffers = model, buffers
        self._go, self._done = threading.Semaphore(0), threading.Semaphore(0)
        self._task: tuple[int, int] | None = None
        self._out: np.ndarray | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="imgcomp-wavefront")

    def __enter__(self) -> "_HalfWorker":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._task = None
        self._go.release()
        self._thread.join()

    def _run(self) -> None:
        while True:
            self._go.acquire()
            if self._task is None:
                return
            try:
                self._out = self.model.rows_frequencies(self.buffers, *self._task)
            except BaseException as exc:  # handed to the decoding thread
                self._error = exc
            self._done.release()

    def start(self, lo: int, hi: int) -> None:
        self._task = (lo, hi)
        self._go.release()

    def result(self) -> np.ndarray:
        self._done.acquire()
        if self._error is not None:
            raise self._error
        return self._out
