"""The decoder D of Mentzer et al. 2018 (Fig. 2) in numpy: what turns decoded symbols into pixels
without importing torch.

It computes the same function as :class:`~imgcomp.systems.mentzer2018.model.ConditionalProbabilityCodec`'s
``decoder`` in eval mode, read from the same ``model.safetensors``:

- Batch normalisation is folded into the preceding convolution (``w * gamma / sqrt(var + eps)``).
- A 3x3 convolution is nine matrix products over the image held row-major in a zero-bordered
  buffer (:mod:`imgcomp.numpy_conv`, shared with the other systems' numpy decoders).
- A stride-2 transposed convolution (kernel 5 or 3 of Mentzer et al., kernel 2 of Patel et al.)
  is a 3x3 convolution of its input to ``4 * C_out`` channels, one block per output phase
  ``(r_y, r_x)``, followed by depth-to-space: output ``2m + r`` takes input ``m + d`` through kernel
  tap ``k = r + p - 2d`` (from ``o = 2i - p + k``).

The result is float32 arithmetic in another order than torch's, so pixels may differ from the
torch decoder's by a rounding step (measured: at most 1 level, on a few pixels in 10^4; see
``tests/test_numpy_decoder.py``); the symbols, which are all that the entropy coder depends on, are
decoded elsewhere and exactly.
"""

from __future__ import annotations

import numpy as np

from imgcomp.numpy_conv import Grid, TapConv, conv_into, convolve, to_pixels
from imgcomp.numpy_conv import conv3x3 as tap_conv3x3

__all__ = ["NumpySynthesis", "conv3x3", "to_pixels", "upconv_as_conv"]

BN_EPS = 1e-5  # torch.nn.BatchNorm2d's default


def _fold_bn(weight: np.ndarray, bias: np.ndarray | None, state: dict, prefix: str | None, out_axis: int):
    """Fold BatchNorm ``prefix`` (eval mode) into a weight whose output channels are on ``out_axis``."""
    cout = weight.shape[out_axis]
    bias = np.zeros(cout, np.float64) if bias is None else bias.astype(np.float64)
    weight = weight.astype(np.float64)
    if prefix is not None:
        scale = state[f"{prefix}.weight"].astype(np.float64) / np.sqrt(state[f"{prefix}.running_var"].astype(np.float64) + BN_EPS)
        shape = [1] * weight.ndim
        shape[out_axis] = cout
        weight = weight * scale.reshape(shape)
        bias = (bias - state[f"{prefix}.running_mean"]) * scale + state[f"{prefix}.bias"]
    return weight, bias


def conv3x3(state: dict, conv: str, bn: str | None) -> TapConv:
    """``nn.Conv2d(C_in, C_out, 3, padding=1)`` (+ BatchNorm) as nine tap matrices."""
    return tap_conv3x3(*_fold_bn(state[f"{conv}.weight"], state.get(f"{conv}.bias"), state, bn, 0))


def upconv_as_conv(state: dict, conv: str, bn: str | None) -> TapConv:
    """``nn.ConvTranspose2d(C_in, C_out, k, stride=2, padding=p, output_padding=2p+2-k)`` (+ BatchNorm)
    as a convolution to ``(2, 2, C_out)`` phase blocks (module doc); taps that no phase uses are dropped."""
    weight, bias = _fold_bn(state[f"{conv}.weight"], state.get(f"{conv}.bias"), state, bn, 1)  # (in, out, k, k)
    cin, cout, kernel, _ = weight.shape
    padding = kernel // 2 if kernel != 2 else 0
    taps, mats = [], []
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            mat = np.zeros((cin, 2, 2, cout))
            used = False
            for ry in (0, 1):
                ky = ry + padding - 2 * dy
                for rx in (0, 1):
                    kx = rx + padding - 2 * dx
                    if 0 <= ky < kernel and 0 <= kx < kernel:
                        mat[:, ry, rx, :] = weight[:, :, ky, kx]
                        used = True
            if used:
                taps.append((dy, dx))
                mats.append(mat.reshape(cin, 4 * cout))
    return TapConv(taps, np.ascontiguousarray(np.stack(mats), np.float32), np.tile(bias, 4).astype(np.float32))


class NumpySynthesis:
    """D of a Mentzer et al. model, from its state dict (numpy arrays, as ``safetensors.numpy`` loads
    them) and config: ``__call__(z_hat)`` maps (K, h, w) latent values to (8h, 8w, 3) float32 on
    the 0-255 scale, not clamped."""

    def __init__(self, state: dict[str, np.ndarray], config) -> None:
        bn = config.batch_norm

        def norm(prefix: str) -> str | None:
            return prefix if bn else None

        self.first = upconv_as_conv(state, "decoder.0.0", norm("decoder.0.1"))
        self.blocks: list[list[tuple[TapConv, TapConv]]] = []
        for g in range(config.residual_groups):
            group = []
            for b in range(config.blocks_per_group):
                body = f"decoder.1.groups.{g}.blocks.{b}.body"
                group.append((conv3x3(state, f"{body}.0", norm(f"{body}.1")), conv3x3(state, f"{body}.3", norm(f"{body}.4"))))
            self.blocks.append(group)
        self.tail = conv3x3(state, "decoder.1.tail.0", norm("decoder.1.tail.1"))
        self.up2 = upconv_as_conv(state, "decoder.2.0", norm("decoder.2.1"))
        self.up3 = upconv_as_conv(state, "decoder.3.0", None)
        self.mean = np.asarray(config.input_mean, np.float32)
        self.std = np.asarray(config.input_std, np.float32)
        self.channels = config.channels

    def __call__(self, z_hat: np.ndarray) -> np.ndarray:
        K, h, w = z_hat.shape
        grid = Grid(h, w, K)
        grid.interior()[...] = z_hat.transpose(1, 2, 0)
        grid = self._upsample(grid, self.first, relu=True)  # (2h, 2w, n)
        grid = self._body(grid)
        grid = self._upsample(grid, self.up2, relu=True)  # (4h, 4w, n/2)
        out = self._phases(grid, self.up3)  # (4h, W4 + 2, 2, 2, 3)
        H, W = grid.height, grid.width
        image = out[:, :W].transpose(0, 2, 1, 3, 4).reshape(2 * H, 2 * W, 3)
        return image * self.std + self.mean

    def _phases(self, grid: Grid, conv: TapConv) -> np.ndarray:
        n = grid.positions
        out = np.empty((n, conv.out_channels), np.float32)
        convolve(grid, conv, out, np.empty_like(out))
        return out.reshape(grid.height, grid.stride, 2, 2, conv.out_channels // 4)

    def _upsample(self, grid: Grid, conv: TapConv, relu: bool) -> Grid:
        phases = self._phases(grid, conv)
        if relu:
            np.maximum(phases, 0, out=phases)
        H, W, cout = grid.height, grid.width, conv.out_channels // 4
        result = Grid(2 * H, 2 * W, cout)
        result.interior().reshape(H, 2, W, 2, cout)[...] = phases[:, :W].transpose(0, 2, 1, 3, 4)
        return result

    def _body(self, x: Grid) -> Grid:
        """``x + tail(groups(x))``, each group ``g + blocks(g)``, each block ``b + conv(relu(conv(b)))``."""
        H, W, C = x.height, x.width, x.channels
        scratch = np.empty((x.positions, C), np.float32)
        a, t = Grid(H, W, C), Grid(H, W, C)
        current = Grid(H, W, C)
        current.data[...] = x.data
        for group in self.blocks:
            group_input = current.data.copy()
            for conv1, conv2 in group:
                conv_into(current, conv1, a, scratch)
                np.maximum(a.data, 0, out=a.data)
                conv_into(a, conv2, t, scratch)
                current.data += t.data
            current.data += group_input
        conv_into(current, self.tail, t, scratch)
        t.data += x.data
        return t
