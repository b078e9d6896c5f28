"""The integer-exact context model P: its parameters, their file format, and the arithmetic.

Why: arithmetic decoding fails if one probability differs by one unit between encoder and
decoder. The float P (:mod:`imgcomp.entropy.wavefront`) computes its logits with float32 BLAS and
its probabilities with ``exp``, whose last bits depend on the BLAS kernel (OpenBLAS picks one per
CPU) and on libm, so a file encoded on one machine may not decode on another. This model computes
every coder frequency from integers with operations whose result is exactly defined, so it is
the same on every machine, BLAS kernel, thread count and batch shape.

The arithmetic (one masked 3-D convolution = one "layer"; ``x`` are integer activations):

1. ``acc = gather(x) @ W + b``: integer weights ``W`` (taps * C_in, C_out) and biases ``b``.
2. Requantisation by a power of two per output channel: ``y = floor((acc + r) / 2**s[c])`` with
   ``r = floor(2**s[c] / 2)`` (round half up; the integer ``(acc + r) >> s``).
3. Layers 0 and 1: ReLU and clip, ``y = min(max(y, 0), high)``. Layer 2 (second conv of the
   residual block) is requantised to the scale of ``h1`` and added: ``h3 = clip(h1 + y, low, high)``.
   Layer 3 gives integer logits in fixed point, ``LOGIT_FRACTION_BITS`` fractional bits (units of
   ``2**-LOGIT_FRACTION_BITS`` nats), clipped to [low, high].

Steps 1-2 run as ONE BLAS product in floating point on exact values: the fast path multiplies
``x`` by ``W[:, c] * 2**-s[c]`` and adds ``(b[c] + r) * 2**-s[c]``, then takes ``floor``. Every
product and every partial sum, in any order the BLAS kernel picks, with or without FMA, is an
integer multiple of ``2**-s[c]`` whose numerator is at most
``bound[c] = max|x| * sum_i |W[i, c]| + |b[c]| + r`` in magnitude. When ``bound < 2**24`` for
every channel of every layer the model runs in float32 (24-bit significand), otherwise in
float64 if ``bound < 2**53`` (:meth:`IntegerContextParams.compute_dtype`); such values are exactly
representable (the exponents stay far from under/overflow), so no operation rounds and the
result is the exact integer arithmetic above, on any machine. (Both dtypes give the same
integers; the choice is speed only.)

4. Frequencies (:func:`frequencies`): ``d = min(max(logits) - logits, len(table) - 1)``,
   ``e = table[d]`` with ``table[d] = round(2**TABLE_BITS * exp(-d / 2**LOGIT_FRACTION_BITS))``
   computed once with Python's ``decimal`` (correctly rounded, no libm; :func:`exp_table`) and
   stored in the model file; ``f = 1 + (e * (TOTAL - L)) // sum(e)`` (computed exactly in float64:
   :func:`frequencies_float`), and the remainder ``TOTAL - sum(f)`` (0 <= r < L) goes to the first
   symbol with the largest logit. So every frequency is
   >= 1 and they sum to ``TOTAL = 2**FREQUENCY_BITS``.
5. The coder gets ``f / TOTAL`` as float64: dyadic rationals, exact in float64 (and float32), so
   constriction's ``Categorical(perfect=False)`` sees identical inputs everywhere and its own
   (deterministic, IEEE, libm-free) quantisation to its 24-bit fixed point gives identical
   integer CDFs.

This module and :mod:`imgcomp.systems.mentzer2018.integer_context.wavefront` import numpy only (no torch): a decoder
needs neither torch nor float determinism. :mod:`imgcomp.systems.mentzer2018.integer_context.convert` builds the
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

FORMAT = "imgcomp-integer-context-v2"
LOGIT_FRACTION_BITS = 8  # integer logits are in units of 2**-8 nats
TABLE_BITS = 20  # table[0] = 2**20
FREQUENCY_BITS = 16  # the coder's frequencies sum to 2**16
TOTAL = 1 << FREQUENCY_BITS
FLOAT32_LIMIT = 2**24  # numerators below this are exact in float32
EXACT_LIMIT = 2**53  # ... and below this in float64
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
    """One masked convolution in integers: ``y = (gather(x) @ weight + bias + r) >> shift``."""

    weight: np.ndarray  # int64 (taps * C_in, C_out), rows tap-major (tap 0's C_in inputs first)
    bias: np.ndarray  # int64 (C_out,)
    shift: np.ndarray  # int64 (C_out,), 0..62
    low: int  # output clip range (inclusive)
    high: int

    @property
    def rounding(self) -> np.ndarray:
        """``r = floor(2**shift / 2)``: round half up."""
        return np.where(self.shift > 0, np.left_shift(np.int64(1), np.maximum(self.shift - 1, 0)), 0)


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

    def input_maxima(self) -> list[int]:
        """Largest |x| each layer can read."""
        maxima = [int(np.abs(self.inputs).max(initial=0))]
        for layer in self.layers[:-1]:
            maxima.append(max(abs(layer.low), abs(layer.high)))
        return maxima

    def bounds(self) -> list[int]:
        """Per layer, the largest numerator of any partial sum of the fast path (module doc)."""
        return [accumulator_bound(layer, m) for layer, m in zip(self.layers, self.input_maxima())]

    def compute_dtype(self) -> type:
        """float32 if every bound is below 2**24, else float64 (both exact; see the module doc)."""
        return np.float32 if max(self.bounds()) < FLOAT32_LIMIT else np.float64

    def check(self) -> None:
        """Raise ValueError unless the exactness bounds of the module docstring hold."""
        if len(self.layers) != 4:
            raise ValueError("the integer context model has four layers")
        if self.inputs.dtype != np.int64 or self.table.dtype != np.int64:
            raise ValueError("inputs and table must be int64")
        in_channels = self.inputs.shape[1]
        for index, layer in enumerate(self.layers):
            taps = len(self.taps(index))
            if layer.weight.shape[0] != taps * in_channels:
                raise ValueError(f"layer {index}: weight has {layer.weight.shape[0]} rows, expected {taps * in_channels}")
            if layer.shift.shape != (layer.weight.shape[1],) or layer.shift.min() < 0 or layer.shift.max() > 62:
                raise ValueError(f"layer {index}: shifts must be 0..62, one per output channel")
            if index < 2 and layer.low != 0:
                raise ValueError(f"layer {index}: a ReLU layer's low bound is 0")
            in_channels = layer.weight.shape[1]
        for index, bound in enumerate(self.bounds()):
            if bound >= EXACT_LIMIT:
                raise ValueError(f"layer {index}: accumulator bound {bound} >= 2**53: not exact in float64")
        if self.table[0] <= 0 or self.table[-1] != 0 or np.any(np.diff(self.table) > 0):
            raise ValueError("exp table must be non-increasing from a positive value to 0")
        if int(self.table[0]) * (1 << self.frequency_bits) >= 2**62 or self.num_symbols > (1 << self.frequency_bits):
            raise ValueError("table and total too large for int64 frequency arithmetic")


def accumulator_bound(layer: IntegerLayer, input_max: int) -> int:
    """Largest numerator of any partial sum of ``x @ W + b + r`` for |x| <= input_max, over the
    output channels (exact Python integers)."""
    column_l1 = np.abs(layer.weight).astype(object).sum(axis=0)
    rest = np.abs(layer.bias).astype(object) + layer.rounding.astype(object)
    return int(max(int(input_max) * c + r for c, r in zip(column_l1, rest)))


class FastLayer:
    """A layer's operands for the fast path: ``floor(x @ weight + bias)`` equals the integer
    requantised value (exact, see the module doc)."""

    def __init__(self, layer: IntegerLayer, dtype: type):
        scale = np.ldexp(1.0, -layer.shift.astype(np.int32))  # 2**-s, exact
        self.weight = (layer.weight * scale).astype(dtype)  # |numerator| < 2**24 or 2**53: exact
        self.bias = ((layer.bias + layer.rounding) * scale).astype(dtype)
        self.low, self.high = layer.low, layer.high


def frequencies(logits: np.ndarray, table: np.ndarray, frequency_bits: int = FREQUENCY_BITS) -> np.ndarray:
    """Integer logits (n, L) (int64, or floats holding integers) -> int64 frequencies (n, L),
    every one >= 1, each row summing to ``2**frequency_bits`` (see :func:`frequencies_float`)."""
    logits = np.asarray(logits)
    if logits.dtype.kind in "iu":
        logits = np.clip(logits, -(2**22), 2**22).astype(np.float64)
    return frequencies_float(logits, table.astype(np.float64), frequency_bits).astype(np.int64)


def frequencies_float(logits: np.ndarray, table: np.ndarray, frequency_bits: int = FREQUENCY_BITS) -> np.ndarray:
    """The frequencies as float64 holding exact integers (the fast path; ``table`` as float64).

    ``d = max - logits`` (integers below 2**23: exact in float32 and float64), ``e = table[min(d,
    len - 1)]``, ``f = 1 + floor(e * (T - L) / sum(e))``: ``e * (T - L) < 2**20 * 2**16`` is exact,
    and ``floor`` of the correctly rounded quotient is the integer quotient, because the quotient is
    below ``T = 2**16`` (ulp <= 2**-37) while a non-integer quotient is at least ``1 / sum(e) >
    2**-(20 + log2 L)`` away from the next integer. The remainder ``T - sum(f)`` (0 <= r < L) goes to
    the first symbol with the largest ``e`` (the first with ``d = 0``)."""
    n, L = logits.shape
    total = float(1 << frequency_bits)
    if L > total or L >= 2**16:
        raise ValueError("more symbols than the frequency total")
    d = logits.max(axis=1, keepdims=True) - logits
    e = np.take(table, d.astype(np.intp), mode="clip")  # d >= 0; "clip" maps d >= len - 1 to table[-1] = 0
    norm = e.sum(axis=1, keepdims=True)  # >= table[0] > 0: the row maximum has d = 0
    f = e * (total - L)
    f /= norm
    np.floor(f, out=f)
    f += 1
    f[np.arange(n), e.argmax(axis=1)] += total - f.sum(axis=1)
    return f


def coder_probabilities(freqs: np.ndarray, frequency_bits: int = FREQUENCY_BITS) -> np.ndarray:
    """``f / 2**frequency_bits`` as float64: exact dyadic values for the range coder."""
    return freqs.astype(np.float64) * 2.0**-frequency_bits


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
        arrays[f"layer{i}.shift"] = layer.shift
        arrays[f"layer{i}.low_high"] = np.array([layer.low, layer.high], np.int64)
    arrays["bits"] = np.array([params.fraction_bits, params.frequency_bits], np.int64)
    return {k: np.ascontiguousarray(v, dtype=np.int64) for k, v in arrays.items()}


def _from_arrays(arrays: dict[str, np.ndarray], meta: dict) -> IntegerContextParams:
    layers = []
    for i in range(4):
        low, high = (int(v) for v in arrays[f"layer{i}.low_high"])
        layers.append(IntegerLayer(
            arrays[f"layer{i}.weight"].astype(np.int64), arrays[f"layer{i}.bias"].astype(np.int64),
            arrays[f"layer{i}.shift"].astype(np.int64), low, high))
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


def canonical_bytes(params: IntegerContextParams) -> bytes:
    """Every array that defines the coder's numbers, in a fixed order, as its name, shape and
    little-endian int64 values: the same bytes for the same model anywhere (unlike a zip or a
    safetensors file, whose metadata may vary). Hash it for the container's model id."""
    out = io.BytesIO()
    out.write(FORMAT.encode() + b"\0")
    for name, array in sorted(_to_arrays(params).items()):
        out.write(name.encode() + b"\0" + np.array(array.shape, "<i8").tobytes() + array.astype("<i8").tobytes())
    return out.getvalue()


def params_sha256(params: IntegerContextParams) -> str:
    """SHA-256 (hex) of :func:`canonical_bytes`."""
    import hashlib

    return hashlib.sha256(canonical_bytes(params)).hexdigest()


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
        y = (acc + layer.rounding) >> layer.shift
        if index < 2:
            y = np.clip(y, 0, layer.high)
            if index == 0:
                h1 = y
        elif index == 2:
            y = np.clip(h1 + y, layer.low, layer.high)
        else:
            y = np.clip(y, layer.low, layer.high)
        x = y
    return x
