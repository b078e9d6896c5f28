"""The decoder of Rippel & Bourdev 2017 (sec. 3.1, the mirror of the pyramidal encoder) in numpy:
what turns decoded symbols into pixels without importing torch.

It computes the same function as :class:`~imgcomp.systems.rippel2017.model.PyramidDecoder` and
:meth:`~imgcomp.systems.rippel2017.model.RippelCodec.decode_features` /
:meth:`~imgcomp.systems.rippel2017.model.RippelCodec.dequantise`, read from the same
``model.safetensors``, for every configuration they support:

- dequantisation (sec. 3.2.1): ``y_hat = q * s``, ``s = 2^-(B-1) * 2^max(log2_step, 0)`` per
  channel of the quality;
- convolutions at the latent's size (``inp``, the ``mix`` stack), leaky ReLU(0.2) after each;
- one branch per level from ``decoder_first_branch``: a transposed convolution with kernel =
  stride = 2^(t-m) to a finer level m, a conv 3x3 at the target level t, a strided convolution with
  kernel = stride = 2^(m-t) to a coarser one (:mod:`imgcomp.numpy_conv`: per-pixel matrix products
  with depth-to-space or space-to-depth);
- each level's extractor stack (conv 3x3 + leaky ReLU), merged from the coarsest level down with
  the stride-2 upsamplers (``level + lrelu(up(merged))``; levels without a branch are
  ``extract(lrelu(up(merged)))``);
- the output conv 3x3 and the de-normalisation ``x * input_std + input_mean``.

The result is float32 arithmetic in another order than torch's, so pixels may differ from the
torch decoder's by a rounding step (``tests/test_rippel_numpy_decoder.py`` and docs/rippel2017.md
give the measured figures); the symbols are decoded exactly by :mod:`.bit_context`.
"""

from __future__ import annotations

import numpy as np

from imgcomp.errors import ImgcompError
from imgcomp.numpy_conv import (
    BlockConv, Grid, TapConv, block_downsample, block_upsample, conv3x3, conv_into, convolve, leaky_relu_,
    strided_block_conv, transposed_block_conv,
)
from imgcomp.systems.rippel2017.config import RippelConfig

SLOPE = 0.2  # as model.SLOPE


def _parameters(state: dict[str, np.ndarray], name: str, shape: tuple[int, ...], transposed: bool = False):
    """(weight, bias) of layer ``name``, whose weight must have ``shape``: (C_out, C_in, k, k), or
    (C_in, C_out, k, k) ``transposed`` (a KeyError if it is missing)."""
    weight, bias = state[f"{name}.weight"], state[f"{name}.bias"]
    if weight.shape != shape or bias.shape != (shape[1] if transposed else shape[0],):
        raise ImgcompError(f"weights of {name} have shape {weight.shape}, its config needs {shape}")
    return weight, bias


def _conv(state: dict[str, np.ndarray], name: str, cin: int, cout: int) -> TapConv:
    return conv3x3(*_parameters(state, name, (cout, cin, 3, 3)))


class NumpySynthesis:
    """The decoder of a Rippel & Bourdev model, from its state dict (numpy arrays, as
    ``safetensors.numpy`` loads them) and config: ``__call__(symbols, quality)`` maps (C, h, w)
    symbols to the padded image (h 2^t, w 2^t, 3) float32 on the 0-255 scale, not clamped."""

    def __init__(self, state: dict[str, np.ndarray], config: RippelConfig) -> None:
        self.config = config
        t, ch, align = config.target_scale, config.scale_channels, config.align_channels
        self.log2_step = np.asarray(state["log2_step"], np.float32)  # (qualities, C)
        if self.log2_step.shape != (config.qualities, config.latent_channels):
            raise ImgcompError(f"weights' log2_step has shape {self.log2_step.shape}, its config needs "
                               f"{(config.qualities, config.latent_channels)}")
        self.inp = _conv(state, "decoder.inp", config.latent_channels, align)
        self.mix = [_conv(state, f"decoder.mix.{i}", align, align) for i in range(config.align_layers)]
        self.branch: dict[int, TapConv | BlockConv] = {}
        for index, m in enumerate(range(config.decoder_first_branch, config.scales)):
            name, f = f"decoder.branch.{index}", 2 ** abs(m - t)
            if m == t:
                self.branch[m] = _conv(state, name, align, ch[m])
            elif m < t:
                self.branch[m] = transposed_block_conv(*_parameters(state, name, (align, ch[m], f, f), transposed=True))
            else:
                self.branch[m] = strided_block_conv(*_parameters(state, name, (ch[m], align, f, f)))
        self.extract = [
            [_conv(state, f"decoder.extract.{m}.{i}", ch[m], ch[m]) for i in range(config.decoder_layers[m])]
            for m in range(config.scales)
        ]
        self.up = [
            transposed_block_conv(*_parameters(state, f"decoder.up.{m}", (ch[m + 1], ch[m], 2, 2), transposed=True))
            for m in range(config.scales - 1)
        ]
        self.out = _conv(state, "decoder.out", ch[0], 3)
        self.mean = np.asarray(config.input_mean, np.float32)
        self.std = np.asarray(config.input_std, np.float32)

    def step(self, quality: int) -> np.ndarray:
        """Bin size per channel (C,) float32 at ``quality`` (0-based), as ``RippelCodec.step``."""
        base = np.float32(2.0 ** -(self.config.bits - 1))
        return base * np.exp2(np.maximum(self.log2_step[quality], np.float32(0.0)))

    def __call__(self, symbols: np.ndarray, quality: int) -> np.ndarray:
        """Symbols (C, h, w) at ``quality`` (0-based) -> the padded image (H, W, 3) float32, 0-255 scale."""
        C, h, w = symbols.shape
        latent = Grid(h, w, C)
        latent.interior()[...] = symbols.transpose(1, 2, 0).astype(np.float32) * self.step(quality)
        x = latent
        for conv in [self.inp, *self.mix]:
            x = self._conv_act(x, conv)
        stride = 2**self.config.target_scale
        merged: Grid | None = None
        for m in range(self.config.scales - 1, -1, -1):
            size = (h * stride >> m, w * stride >> m)
            if m < self.config.decoder_first_branch:  # no branch: this level is the upsampled coarser ones
                level = self._upsampled(merged, self.up[m], size, add_to=None)
            else:
                level = self._branch(x, m, size)
            for conv in self.extract[m]:
                level = self._conv_act(level, conv)
            if merged is not None and m >= self.config.decoder_first_branch:
                self._upsampled(merged, self.up[m], size, add_to=level)
            merged = level
        H, W = merged.height, merged.width
        out = np.empty((merged.positions, 3), np.float32)
        convolve(merged, self.out, out, np.empty_like(out))
        image = out.reshape(H, merged.stride, 3)[:, :W]
        return image * self.std + self.mean

    def _conv_act(self, grid: Grid, conv: TapConv) -> Grid:
        result = Grid(grid.height, grid.width, conv.out_channels)
        conv_into(grid, conv, result, np.empty((grid.positions, conv.out_channels), np.float32))
        leaky_relu_(result.data, SLOPE)
        return result

    def _branch(self, x: Grid, m: int, size: tuple[int, int]) -> Grid:
        """``lrelu(branch_m(x))`` at level m's ``size``."""
        conv, t = self.branch[m], self.config.target_scale
        if m == t:
            return self._conv_act(x, conv)
        if m < t:
            return self._upsampled(x, conv, size, add_to=None)
        level = Grid(*size, conv.weight.shape[1])
        level.interior()[...] = block_downsample(x, conv)
        leaky_relu_(level.data, SLOPE)
        return level

    @staticmethod
    def _upsampled(source: Grid, conv: BlockConv, size: tuple[int, int], add_to: Grid | None) -> Grid:
        """``lrelu(conv(source))`` (transposed, kernel = stride) as a new grid of ``size``, or added to ``add_to``."""
        blocks = block_upsample(source, conv, SLOPE)
        target = add_to if add_to is not None else Grid(*size, blocks.shape[-1])
        view = target.interior().reshape(source.height, conv.factor, source.width, conv.factor, -1)
        if add_to is None:
            view[...] = blocks
        else:
            view += blocks
        return target

