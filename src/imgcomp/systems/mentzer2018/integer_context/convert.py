"""Build the integer-exact P (:mod:`imgcomp.systems.mentzer2018.integer_context.model`) from a trained float
:class:`~imgcomp.models.context_model.ContextModel3D` (post-training quantisation). Imports torch.

Bit widths (all checked by :meth:`IntegerContextParams.check`):

- symbol inputs: ``input_bits`` (|x| <= 2**(input_bits-1) - 1), one scale per input feature;
- weights: ``weight_bits`` (|w| <= 2**(weight_bits-1) - 1) with a power-of-two scale per output
  channel relative to the layer's output scale (so requantisation is a shift), input scales
  folded in; biases in the accumulator's units;
- activations ``h1``, ``h2`` (after ReLU) in [0, 2**activation_bits - 1] and the residual sum
  ``h3`` (on ``h1``'s scale) in [-(2**activation_bits - 1), 2**activation_bits - 1]; scales from
  the largest value seen on calibration volumes, times ``headroom``;
- logits: fixed point with 8 fractional bits (1/256 nat), clipped to +-2**22.

The exactness bound (module doc of :mod:`imgcomp.systems.mentzer2018.integer_context.model`): per channel,
``max|x| * sum_i |W[i, c]| + |b| + r``. The later layers have 14 kept taps x 24 channels = 336
products per output. With 12-bit weights and 16-bit activations it is below 2**36 (float64, far
below 2**53); with 8-bit weights and 10-bit activations the trained model's column sums
(at most ~122 x the largest weight) keep it below 2**24, and P runs in float32 like the float
coder. The converter does not choose the dtype: :meth:`compute_dtype` does, from the bounds.
"""

from __future__ import annotations


import numpy as np
import torch
import torch.nn.functional as F

from imgcomp.systems.mentzer2018.integer_context.model import (
    FLOAT32_LIMIT, LOGIT_FRACTION_BITS, IntegerContextParams, IntegerLayer, accumulator_bound, exp_table,
)

LOGIT_CLIP = 1 << 22  # logits and their differences stay exact even in float32


def _tap_matrix(layer) -> tuple[np.ndarray, np.ndarray]:
    """Float64 (taps * C_in, C_out) matrix of the kept taps (tap-major rows) and the bias."""
    weight = layer.weight.detach().double()
    taps = torch.stack([weight[:, :, dc + 1, dh + 1, dw + 1] for dc, dh, dw in layer.taps()])  # (T, Cout, Cin)
    matrix = taps.permute(0, 2, 1).reshape(-1, layer.out_channels).numpy()
    return matrix, layer.bias.detach().double().numpy()


@torch.no_grad()
def activation_ranges(model, inputs: list[torch.Tensor]) -> dict[str, float]:
    """Largest h1, h2 and |h3| of the float P over calibration inputs ``(N, F, K, H, W)``."""
    ranges = {"h1": 0.0, "h2": 0.0, "h3": 0.0, "logits": 0.0}
    for x in inputs:
        x = x.double()
        conv = lambda layer, v: F.conv3d(v, layer.masked_weight().double(), layer.bias.double(), padding=layer.padding)
        h1 = F.relu(conv(model.conv_in, x))
        h2 = F.relu(conv(model.res_conv1, h1))
        h3 = h1 + conv(model.res_conv2, h2)
        logits = conv(model.conv_out, h3)
        for name, value in (("h1", h1), ("h2", h2), ("h3", h3), ("logits", logits)):
            ranges[name] = max(ranges[name], float(value.abs().max()))
    return ranges


def _quantise_layer(
    matrix: np.ndarray, bias: np.ndarray, row_scale: np.ndarray, out_scale: float, weight_bits: int, low: int, high: int,
) -> IntegerLayer:
    """Integer layer computing ``y ~ (x_float @ matrix + bias) / out_scale`` from integer inputs
    whose row ``i`` is worth ``row_scale[i]``: per output channel, the largest shift ``s`` with
    ``max |W_int| <= 2**(weight_bits - 1) - 1`` where ``W_int = round(W / (out_scale * 2**-s))``."""
    effective = matrix * row_scale[:, None]
    wmax = (1 << (weight_bits - 1)) - 1
    column_max = np.abs(effective).max(axis=0)
    with np.errstate(divide="ignore"):
        shift = np.floor(np.log2(wmax * out_scale / np.maximum(column_max, 1e-300))).astype(np.int64)
    shift = np.clip(shift, 0, 62)
    unit = out_scale * np.ldexp(1.0, -shift.astype(np.int32))  # float value of one acc unit, per channel
    weight = np.rint(effective / unit).astype(np.int64)
    for c in range(weight.shape[1]):  # floor(log2) of a float may land one too high: step down
        while np.abs(weight[:, c]).max(initial=0) > wmax and shift[c] > 0:
            shift[c] -= 1
            unit[c] = out_scale * 2.0 ** -int(shift[c])
            weight[:, c] = np.rint(effective[:, c] / unit[c])
    weight = np.clip(weight, -wmax, wmax)
    bias_int = np.rint(bias / unit).astype(np.int64)
    return IntegerLayer(weight, bias_int, shift, low, high)


def integer_context_from_float(
    model, symbol_inputs: torch.Tensor, calibration: list[torch.Tensor] | None = None,
    weight_bits: int = 12, activation_bits: int = 16, input_bits: int = 12, headroom: float = 1.25,
    fraction_bits: int = LOGIT_FRACTION_BITS, ranges: dict[str, float] | None = None, float32: bool = False,
) -> IntegerContextParams:
    """The integer P for a float ``ContextModel3D`` and its ``symbol_inputs`` ``(S, F)`` or ``(S,)``.

    ``calibration``: P's float inputs ``(N, F, K, H, W)`` on typical symbol volumes, to set the
    activation scales (or pass ``ranges`` from :func:`activation_ranges`). ``float32``: per layer,
    the widest weights up to ``weight_bits`` whose exactness bound stays below 2**24, so P runs in
    float32 (as fast as the float coder); raises if even 4-bit weights do not fit.
    """
    inputs = symbol_inputs.detach().double()
    inputs = inputs[:, None] if inputs.dim() == 1 else inputs
    if ranges is None:
        if not calibration:
            raise ValueError("give calibration volumes or activation ranges")
        ranges = activation_ranges(model, calibration)
    imax = (1 << (input_bits - 1)) - 1
    feature_max = inputs.abs().max(dim=0).values.numpy()
    in_scale = np.where(feature_max > 0, feature_max / imax, 1.0)
    inputs_int = np.rint(inputs.numpy() / in_scale).astype(np.int64)

    amax = (1 << activation_bits) - 1
    s_h1 = max(ranges["h1"], ranges["h3"], 1e-6) * headroom / amax
    s_h2 = max(ranges["h2"], 1e-6) * headroom / amax
    s_logit = 2.0**-fraction_bits
    layers_float = model.layers()
    scales_in = [in_scale, np.full(layers_float[0].out_channels, s_h1), np.full(layers_float[1].out_channels, s_h2),
                 np.full(layers_float[2].out_channels, s_h1)]
    out_scales = [s_h1, s_h2, s_h1, s_logit]
    bounds = [(0, amax), (0, amax), (-amax, amax), (-LOGIT_CLIP, LOGIT_CLIP)]
    layers, layer_bits = [], []
    for index, layer in enumerate(layers_float):
        matrix, bias = _tap_matrix(layer)
        row_scale = np.tile(scales_in[index], len(layer.taps()))
        in_max = int(np.abs(inputs_int).max()) if index == 0 else amax
        for bits in range(weight_bits, 3, -1) if float32 else [weight_bits]:
            quantised = _quantise_layer(matrix, bias, row_scale, out_scales[index], bits, *bounds[index])
            if not float32 or accumulator_bound(quantised, in_max) < FLOAT32_LIMIT:
                break
        else:
            raise ValueError(f"layer {index}: no weight width fits float32 with {activation_bits}-bit activations")
        layer_bits.append(bits)
        layers.append(quantised)
    meta = {
        "weight_bits": layer_bits, "activation_bits": activation_bits, "input_bits": input_bits,
        "headroom": headroom, "ranges": ranges, "scale_h1": s_h1, "scale_h2": s_h2,
        "input_scale": in_scale.tolist(),
    }
    params = IntegerContextParams(inputs_int, layers, exp_table(fraction_bits), fraction_bits, meta=meta)
    params.check()
    meta["bounds_log2"] = [round(float(np.log2(b)), 2) for b in params.bounds()]
    meta["compute_dtype"] = np.dtype(params.compute_dtype()).name
    return params


def calibration_inputs(codec, symbol_volumes: list[torch.Tensor]) -> list[torch.Tensor]:
    """P's float inputs ``(1, F, K, H, W)`` for (K, H, W) symbol volumes of a ``ConditionalProbabilityCodec``."""
    table = codec.symbol_inputs().detach()
    return [table[v][None].permute(0, 4, 1, 2, 3).contiguous() for v in symbol_volumes]


DEFAULT_BITS = {"weight_bits": 12, "activation_bits": 9, "input_bits": 12, "float32": True}


def integer_context_from_codec(codec, symbol_volumes: list[torch.Tensor] | None = None,
                               ranges: dict[str, float] | None = None, **bits) -> IntegerContextParams:
    """The integer P of a ``ConditionalProbabilityCodec`` (Mentzer et al.), calibrated on its
    (K, H, W) symbol volumes of typical photos (or given activation ``ranges``). Defaults: the
    shipping configuration :data:`DEFAULT_BITS` (exact in float32: as fast as the float coder)."""
    if ranges is None:
        if not symbol_volumes:
            raise ValueError("give calibration symbol volumes or activation ranges")
        ranges = activation_ranges(codec.context_model, calibration_inputs(codec, symbol_volumes))
    return integer_context_from_float(codec.context_model, codec.symbol_inputs(), ranges=ranges, **{**DEFAULT_BITS, **bits})
