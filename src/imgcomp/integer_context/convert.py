"""Build the integer-exact P (:mod:`imgcomp.integer_context.model`) from a trained float
:class:`~imgcomp.models.context_model.ContextModel3D` (post-training quantisation). Imports torch.

Bit widths (defaults; all checked by :meth:`IntegerContextParams.check`):

- symbol inputs: ``input_bits`` = 12 (|x| <= 2047), one scale per input feature;
- weights: ``weight_bits`` = 12 (|w| <= 2047), one scale per output channel, the input scales
  folded in; biases in the accumulator's units (about 2**36 at most);
- activations ``h1``, ``h2`` (after ReLU) in [0, 2**16 - 1] and the residual sum ``h3`` (on
  ``h1``'s scale) in [-(2**16 - 1), 2**16 - 1]: ``activation_bits`` = 16 plus sign; scales from
  the largest value seen on calibration volumes, times ``headroom``;
- logits: fixed point with 8 fractional bits (1/256 nat).

The exactness bound: the later layers have 14 kept taps x 24 channels = 336 products per output;
|acc| <= 65535 * 336 * 2047 + |b| < 2**36 (the check uses the actual column sums), far below
2**53, so float64 BLAS adds them exactly in any order; the requantisation multiplier is chosen
per layer so that ``bound * M + 2**(s-1) < 2**52``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from imgcomp.integer_context.model import (
    LOGIT_FRACTION_BITS, IntegerContextParams, IntegerLayer, accumulator_bound, exp_table,
)

LOGIT_CLIP = 1 << 30


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
    matrix: np.ndarray, bias: np.ndarray, row_scale: np.ndarray, input_max: int, out_scale: float,
    weight_bits: int, low: int, high: int,
) -> tuple[IntegerLayer, np.ndarray]:
    """Integer layer computing ``y ~ (x_float @ matrix + bias) / out_scale`` from integer inputs
    whose row ``i`` is worth ``row_scale[i]``. Returns the layer and its per-channel acc unit."""
    effective = matrix * row_scale[:, None]
    wmax = (1 << (weight_bits - 1)) - 1
    column_max = np.abs(effective).max(axis=0)
    unit = np.where(column_max > 0, column_max / wmax, 1.0)  # float value of one acc unit, per channel
    weight = np.rint(effective / unit).astype(np.int64)
    bias_int = np.rint(bias / unit).astype(np.int64)
    ratio = unit / out_scale
    probe = IntegerLayer(weight, bias_int, np.ones_like(bias_int), 1, low, high)
    bound = accumulator_bound(probe, input_max)
    # largest shift with bound * M + 2**(s-1) < 2**52, M = round(ratio * 2**s)
    shift = int(math.floor(math.log2(2**51 / (bound * float(ratio.max()) + 1))))
    shift = max(1, min(shift, 62))
    while True:
        multiplier = np.rint(ratio * 2.0**shift).astype(np.int64)
        if bound * int(multiplier.max()) + (1 << (shift - 1)) < 2**52 or shift == 1:
            break
        shift -= 1
    return IntegerLayer(weight, bias_int, multiplier, shift, low, high), unit


def integer_context_from_float(
    model, symbol_inputs: torch.Tensor, calibration: list[torch.Tensor] | None = None,
    weight_bits: int = 12, activation_bits: int = 16, input_bits: int = 12, headroom: float = 1.25,
    fraction_bits: int = LOGIT_FRACTION_BITS, ranges: dict[str, float] | None = None,
) -> IntegerContextParams:
    """The integer P for a float ``ContextModel3D`` and its ``symbol_inputs`` ``(S, F)`` or ``(S,)``.

    ``calibration``: P's float inputs ``(N, F, K, H, W)`` on typical symbol volumes, to set the
    activation scales (or pass ``ranges`` from :func:`activation_ranges`).
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
    input_max = [int(np.abs(inputs_int).max()), amax, amax, amax]
    layers = []
    for index, layer in enumerate(layers_float):
        matrix, bias = _tap_matrix(layer)
        row_scale = np.tile(scales_in[index], len(layer.taps()))
        quantised, _ = _quantise_layer(
            matrix, bias, row_scale, input_max[index], out_scales[index], weight_bits, *bounds[index])
        layers.append(quantised)
    meta = {
        "weight_bits": weight_bits, "activation_bits": activation_bits, "input_bits": input_bits,
        "headroom": headroom, "ranges": ranges, "scale_h1": s_h1, "scale_h2": s_h2,
        "input_scale": in_scale.tolist(),
    }
    params = IntegerContextParams(inputs_int, layers, exp_table(fraction_bits), fraction_bits, meta=meta)
    params.check()
    return params


def calibration_inputs(codec, symbol_volumes: list[torch.Tensor]) -> list[torch.Tensor]:
    """P's float inputs ``(1, F, K, H, W)`` for (K, H, W) symbol volumes of a ``ConditionalProbabilityCodec``."""
    table = codec.symbol_inputs().detach()
    return [table[v][None].permute(0, 4, 1, 2, 3).contiguous() for v in symbol_volumes]
