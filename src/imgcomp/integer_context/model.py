"""The integer-exact context model P: its parameters, their file format, and the arithmetic.

Why: arithmetic decoding fails if one probability differs by one unit between encoder and
decoder. The float P (:mod:`imgcomp.entropy.wavefront`) computes its logits with float32 BLAS and
its probabilities with ``exp``, whose last bits depend on the BLAS kernel (OpenBLAS picks one per
CPU) and on libm, so a file encoded on one machine may not decode on another. This model computes
every coder frequency from integers with operations whose result is exactly defined, so it is
the same on every machine, BLAS kernel, thread count and batch shape.

The arithmetic (one masked 3-D convolution = one "layer"; ``x`` are integer activations):

1. ``acc = gather(x) @ W + b``: integer weights ``W`` (taps * C_in, C_out) and biases ``b``.
   It runs in float64 BLAS on integer-valued operands. Every product is an integer and every
   partial sum, in whatever order and with or without FMA, is an integer of magnitude at most
   ``bound = max|x| * max_c sum_i |W[i, c]| + max|b|``. The converter checks ``bound < 2**53``
   (in fact far below: :data:`ACCUMULATOR_LIMIT`), so every intermediate float64 value is exactly
   representable, no operation rounds, and the result is the exact integer sum.
2. Requantisation: ``y = floor((acc * M[c] + 2**(s-1)) / 2**s)`` with integer multipliers ``M``
   per output channel and one shift ``s`` per layer, again in float64: ``|acc * M| + 2**(s-1)`` is
   checked below ``2**53`` (exact product and sum), multiplying by ``2**-s`` is exact (a power of
   two, no underflow at these sizes) and ``floor`` is exact. This is the same as the integer
   ``(acc * M + 2**(s-1)) >> s`` (arithmetic shift, round half up).
3. Layers 0 and 1: ReLU and clip, ``y = min(max(y, 0), high)``. Layer 2 (second conv of the
   residual block) is requantised to the scale of ``h1`` and added: ``h3 = clip(h1 + y, low, high)``.
   Layer 3 gives integer logits in fixed point, ``LOGIT_FRACTION_BITS`` fractional bits (units of
   ``2**-LOGIT_FRACTION_BITS`` nats).
4. Frequencies (:func:`frequencies`): ``d = min(max(logits) - logits, len(table) - 1)``,
   ``e = table[d]`` with ``table[d] = round(2**TABLE_BITS * exp(-d / 2**LOGIT_FRACTION_BITS))``
   computed once with Python's ``decimal`` (correctly rounded, no libm; :func:`exp_table`) and
   stored in the model file; ``f = 1 + (e * (TOTAL - L)) // sum(e)`` in int64, and the remainder
   ``TOTAL - sum(f)`` (0 <= r < L) goes to the first most probable symbol. So every frequency is
   >= 1 and they sum to ``TOTAL = 2**FREQUENCY_BITS``.
5. The coder gets ``f / TOTAL`` as float64: dyadic rationals, exact in float64 (and float32), so
   constriction's ``Categorical(perfect=False)`` sees identical inputs everywhere and its own
   (deterministic, IEEE, libm-free) quantisation to its 24-bit fixed point gives identical
   integer CDFs.

This module and :mod:`imgcomp.integer_context.wavefront` import numpy only (no torch): a decoder
needs neither torch nor float determinism. :mod:`imgcomp.integer_context.convert` builds the
parameters from a trained float :class:`~imgcomp.models.context_model.ContextModel3D`.
"""

from __future__ import annotations

import decimal
import io
import itertools
import json
import os
from dataclasses import dataclass, field

import numpy as np

FORMAT = "imgcomp-integer-context-v1"
LOGIT_FRACTION_BITS = 8  # integer logits are in units of 2**-8 nats
TABLE_BITS = 20  # table[0] = 2**20
FREQUENCY_BITS = 16  # the coder's frequencies sum to 2**16
TOTAL = 1 << FREQUENCY_BITS
EXACT_LIMIT = 2**53  # every float64 intermediate stays below this in magnitude
ACCUMULATOR_LIMIT = 2**40  # what the converter allows for |acc| (so acc * M has room below 2**53)
WAVEFRONT_WEIGHTS = (4, 2, 1)  # t = 4c + 2h + w, as the float wavefront


def causal_taps(include_centre: bool, kernel_size: int = 3) -> list[tuple[int, int, int]]:
    """Offsets (dc, dh, dw) kept by the causal mask (Algorithm 1 of Mentzer et al.'s supplement):
    the taps before the centre in raster order, and the centre itself for mask "B"."""
    r = kernel_size // 2
    size = kernel_size**3
    keep = size // 2 + (1 if include_centre else 0)
    return [(dc - r, dh - r, dw - r) for dc, dh, dw in itertools.islice(itertools.product(range(kernel_size), repeat=3), keep)]


def exp_table(fraction_bits: int = LOGIT_FRACTION_BITS, table_bits: int = TABLE_BITS) -> np.ndarray:
    """``round(2**table_bits * exp(-d / 2**fraction_bits))`` for d = 0, 1, ... up to and including
    the first 0, as int64. Computed with ``decimal`` at 40 digits (its ``exp`` is correctly
    rounded), so the table is the same on every machine; half-way cases cannot occur for d > 0
    (exp of a nonzero rational is irrational)."""
    context = decimal.Context(prec=40, rounding=decimal.ROUND_HALF_EVEN)
    one = decimal.Decimal(1 << table_bits)
    step = decimal.Decimal(1) / decimal.Decimal(1 << fraction_bits)
    values = []
    d = 0
    while True:
        value = int((one * context.exp(-step * d, )).to_integral_value(rounding=decimal.ROUND_HALF_EVEN))
        values.append(value)
        if value == 0:
            break
        d += 1
    return np.array(values, np.int64)


@dataclass
class IntegerLayer:
    """One masked convolution in integers: ``y = requant(gather(x) @ weight + bias)``."""

    weight: np.ndarray  # int64 (taps * C_in, C_out), rows tap-major (tap 0's C_in inputs first)
    bias: np.ndarray  # int64 (C_out,)
    multiplier: np.ndarray  # int64 (C_out,)
    shift: int
    low: int  # output clip range (inclusive)
    high: int


@dataclass
class IntegerContextParams:
    """Everything the integer P needs; saved and loaded as integer arrays (:func:`save`, :func:`load`)."""

    inputs: np.ndarray  # int64 (num_symbols, F): what P reads for each symbol
    layers: list[IntegerLayer]  # conv_in (mask A), res_conv1, res_conv2, conv_out (mask B)
    table: np.ndarray  # int64: exp table (see exp_table)
    fraction_bits: int = LOGIT_FRACTION_BITS
    frequency_bits: int = FREQUENCY_BITS
    meta: dict = field(default_factory=dict)  # scales and provenance, informational only

    @property
    def num_symbols(self) -> int:
        return self.inputs.shape[0]

    @property
    def channels(self) -> list[int]:
        return [layer.weight.shape[1] for layer in self.layers]

    def taps(self, layer: int) -> list[tuple[int, int, int]]:
        return causal_taps(include_centre=layer > 0)

    def check(self) -> None:
        """Raise ValueError unless the exactness bounds of the module docstring hold."""
        if len(self.layers) != 4:
            raise ValueError("the integer context model has four layers")
        if self.inputs.dtype != np.int64 or self.table.dtype != np.int64:
            raise ValueError("inputs and table must be int64")
        in_max = int(np.abs(self.inputs).max())
        in_channels = self.inputs.shape[1]
        for index, layer in enumerate(self.layers):
            taps = len(self.taps(index))
            if layer.weight.shape[0] != taps * in_channels:
                raise ValueError(f"layer {index}: weight has {layer.weight.shape[0]} rows, expected {taps * in_channels}")
            bound = accumulator_bound(layer, in_max)
            if bound >= ACCUMULATOR_LIMIT:
                raise ValueError(f"layer {index}: accumulator bound {bound} >= 2**40")
            if bound * int(np.abs(layer.multiplier).max()) + (1 << max(layer.shift - 1, 0)) >= EXACT_LIMIT:
                raise ValueError(f"layer {index}: requantisation product may exceed 2**53")
            if not 1 <= layer.shift <= 62:
                raise ValueError(f"layer {index}: shift {layer.shift} out of range")
            in_max = max(abs(layer.low), abs(layer.high))
            in_channels = layer.weight.shape[1]
        if self.table[0] <= 0 or self.table[-1] != 0 or np.any(np.diff(self.table) > 0):
            raise ValueError("exp table must be non-increasing from a positive value to 0")
        # frequencies: e * (TOTAL - L) must fit int64
        if int(self.table[0]) * (1 << self.frequency_bits) >= 2**62:
            raise ValueError("table and total too large for int64 frequency arithmetic")


def accumulator_bound(layer: IntegerLayer, input_max: int) -> int:
    """Largest |partial sum| of ``x @ W + b`` for |x| <= input_max (exact Python integers)."""
    column_l1 = np.abs(layer.weight).sum(axis=0, dtype=object) if layer.weight.size else np.zeros(1, object)
    return int(input_max) * int(max(column_l1)) + int(np.abs(layer.bias).max(initial=0))


def requantise(acc: np.ndarray, layer: IntegerLayer, out: np.ndarray | None = None) -> np.ndarray:
    """``floor((acc * M + 2**(s-1)) / 2**s)`` exactly, on float64 integer values (see module doc)."""
    out = np.multiply(acc, layer.multiplier_f, out=out)
    out += layer.half_f
    out *= layer.inverse_f
    np.floor(out, out=out)
    return out


def prepare(params: IntegerContextParams) -> None:
    """Attach float64 copies of the integer arrays (exact: all below 2**53) for the fast paths."""
    for layer in params.layers:
        layer.weight_f = layer.weight.astype(np.float64)
        layer.bias_f = layer.bias.astype(np.float64)
        layer.multiplier_f = layer.multiplier.astype(np.float64)
        layer.half_f = float(1 << (layer.shift - 1))
        layer.inverse_f = 2.0 ** -layer.shift


def frequencies(logits: np.ndarray, table: np.ndarray, frequency_bits: int = FREQUENCY_BITS) -> np.ndarray:
    """Integer logits (n, L) (int64, or float64 holding integers) -> int64 frequencies (n, L),
    every one >= 1, each row summing to ``2**frequency_bits``."""
    logits = np.asarray(logits)
    n, L = logits.shape
    total = 1 << frequency_bits
    if L > total:
        raise ValueError("more symbols than the frequency total")
    d = logits.max(axis=1, keepdims=True) - logits
    np.minimum(d, len(table) - 1, out=d)
    e = table[d.astype(np.int64)]
    norm = e.sum(axis=1, keepdims=True)  # >= table[0] > 0: the row maximum has d = 0
    f = e * (total - L)
    f //= norm
    f += 1
    remainder = total - f.sum(axis=1)
    f[np.arange(n), f.argmax(axis=1)] += remainder
    return f


def coder_probabilities(freqs: np.ndarray, frequency_bits: int = FREQUENCY_BITS) -> np.ndarray:
    """``f / 2**frequency_bits`` as float64: exact dyadic values for the range coder."""
    return np.ldexp(freqs.astype(np.float64), -frequency_bits)


def ideal_bits(freqs: np.ndarray, symbols: np.ndarray, frequency_bits: int = FREQUENCY_BITS) -> float:
    """``sum -log2 (f[symbol] / total)`` (for reporting only; never feeds the coder)."""
    chosen = freqs[np.arange(len(symbols)), symbols].astype(np.float64)
    return float(len(symbols) * frequency_bits - np.log2(chosen).sum())


# ----------------------------------------------------------------------------- files

def _to_arrays(params: IntegerContextParams) -> dict[str, np.ndarray]:
    arrays = {"inputs": params.inputs, "table": params.table}
    for i, layer in enumerate(params.layers):
        arrays[f"layer{i}.weight"] = layer.weight
        arrays[f"layer{i}.bias"] = layer.bias
        arrays[f"layer{i}.multiplier"] = layer.multiplier
        arrays[f"layer{i}.shift_low_high"] = np.array([layer.shift, layer.low, layer.high], np.int64)
    arrays["bits"] = np.array([params.fraction_bits, params.frequency_bits], np.int64)
    return {k: np.ascontiguousarray(v, dtype=np.int64) for k, v in arrays.items()}


def _from_arrays(arrays: dict[str, np.ndarray], meta: dict) -> IntegerContextParams:
    layers = []
    for i in range(4):
        shift, low, high = (int(v) for v in arrays[f"layer{i}.shift_low_high"])
        layers.append(IntegerLayer(
            arrays[f"layer{i}.weight"].astype(np.int64), arrays[f"layer{i}.bias"].astype(np.int64),
            arrays[f"layer{i}.multiplier"].astype(np.int64), shift, low, high))
    fraction_bits, frequency_bits = (int(v) for v in arrays["bits"])
    params = IntegerContextParams(
        arrays["inputs"].astype(np.int64), layers, arrays["table"].astype(np.int64), fraction_bits, frequency_bits, meta)
    params.check()
    return params


def save(params: IntegerContextParams, path: str | os.PathLike) -> None:
    """Write the parameters as int64 arrays in a safetensors file (metadata: format, scales)."""
    from safetensors.numpy import save_file

    save_file(_to_arrays(params), str(path), metadata={"format": FORMAT, "meta": json.dumps(params.meta)})


def load(path: str | os.PathLike) -> IntegerContextParams:
    """Read a file written by :func:`save` (checks the exactness bounds)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        metadata = f.metadata() or {}
        if metadata.get("format") != FORMAT:
            raise ValueError(f"{path}: not an integer context model ({metadata.get('format')!r})")
        arrays = {key: f.get_tensor(key) for key in f.keys()}
    return _from_arrays(arrays, json.loads(metadata.get("meta", "{}")))


def to_bytes(params: IntegerContextParams) -> bytes:
    """The parameters as .npz bytes (for hashing or embedding)."""
    buffer = io.BytesIO()
    np.savez(buffer, **_to_arrays(params))
    return buffer.getvalue()


# ----------------------------------------------------------------------------- reference

def reference_logits(params: IntegerContextParams, symbols: np.ndarray) -> np.ndarray:
    """Integer logits (K, H, W, L) of a (K, H, W) symbol volume by a direct 3-D convolution in
    Python integers (int64 numpy, object-free but with no BLAS and no wavefront): the slow, obvious
    definition the fast path must match exactly. For tests on tiny volumes."""
    K, H, W = symbols.shape
    x = params.inputs[symbols]  # (K, H, W, F) int64
    h1 = None
    for index, layer in enumerate(params.layers):
        taps = params.taps(index)
        c_in = x.shape[-1]
        padded = np.zeros((K + 2, H + 2, W + 2, c_in), np.int64)
        padded[1:-1, 1:-1, 1:-1] = x
        acc = np.zeros((K, H, W, layer.weight.shape[1]), np.int64)
        for k in range(K):
            for i in range(H):
                for j in range(W):
                    total = layer.bias.copy()
                    for t, (dc, dh, dw) in enumerate(taps):
                        v = padded[k + 1 + dc, i + 1 + dh, j + 1 + dw]
                        total = total + v @ layer.weight[t * c_in : (t + 1) * c_in]
                    acc[k, i, j] = total
        y = (acc * layer.multiplier + (1 << (layer.shift - 1))) >> layer.shift
        if index < 2:
            y = np.clip(y, max(layer.low, 0), layer.high)
            if index == 0:
                h1 = y
        elif index == 2:
            y = np.clip(h1 + y, layer.low, layer.high)
        else:
            y = np.clip(y, layer.low, layer.high)
        x = y
    return x
