"""The decoder D of Mentzer et al. 2018 (Fig. 2) in numpy: what turns decoded symbols into pixels
without importing torch.

It computes the same function as :class:`~imgcomp.systems.mentzer2018.model.ConditionalProbabilityCodec`'s
``decoder`` in eval mode, read from the same ``model.safetensors``:

- Batch normalisation is folded into the preceding convolution (``w * gamma / sqrt(var + eps)``).
- A 3x3 convolution is nine matrix products over the image held row-major in a zero-bordered
  buffer of width ``W + 2``: the tap ``(dy, dx)`` of every output position is the same buffer
  shifted by ``dy * (W + 2) + dx``, a contiguous slice, so no im2col copy is made. The two border
  columns of the result are garbage and are zeroed (they are the next buffer's border).
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

from dataclasses import dataclass

import numpy as np

BN_EPS = 1e-5  # torch.nn.BatchNorm2d's default


@dataclass
class _Conv:
    """A convolution as per-tap matrices: ``weight[t]`` is (C_in, C_out) for input offset ``taps[t]``."""

    taps: list[tuple[int, int]]  # (dy, dx) in -1..1
    weight: np.ndarray  # (len(taps), C_in, C_out) float32, contiguous per tap
    bias: np.ndarray  # (C_out,) float32

    @property
    def out_channels(self) -> int:
        return self.weight.shape[2]


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


def conv3x3(state: dict, conv: str, bn: str | None) -> _Conv:
    """``nn.Conv2d(C_in, C_out, 3, padding=1)`` (+ BatchNorm) as nine tap matrices."""
    weight, bias = _fold_bn(state[f"{conv}.weight"], state.get(f"{conv}.bias"), state, bn, 0)  # (out, in, 3, 3)
    taps = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    mats = np.stack([weight[:, :, dy + 1, dx + 1].T for dy, dx in taps])
    return _Conv(taps, np.ascontiguousarray(mats, np.float32), bias.astype(np.float32))


def upconv_as_conv(state: dict, conv: str, bn: str | None) -> _Conv:
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
    return _Conv(taps, np.ascontiguousarray(np.stack(mats), np.float32), np.tile(bias, 4).astype(np.float32))


class _Grid:
    """An (H, W, C) image held flat, row-major, with a zero border: ``(H + 2) * (W + 2) + 2`` rows."""

    def __init__(self, height: int, width: int, channels: int):
        self.height, self.width, self.channels = height, width, channels
        self.stride = width + 2
        self.data = np.zeros(((height + 2) * self.stride + 2, channels), np.float32)

    @property
    def positions(self) -> int:
        """Rows of a convolution's result: every pixel plus two garbage columns per row."""
        return self.height * self.stride

    def interior(self) -> np.ndarray:
        """The (H, W, C) view of the image."""
        rows = self.data[: (self.height + 2) * self.stride].reshape(self.height + 2, self.stride, self.channels)
        return rows[1:-1, 1:-1]

    def result_view(self) -> np.ndarray:
        """Where a convolution's result goes: position ``y * (W + 2) + x`` lands on pixel (y, x)."""
        return self.data[self.stride + 1 : self.stride + 1 + self.positions]

    def clear_border_columns(self) -> None:
        rows = self.data[: (self.height + 2) * self.stride].reshape(self.height + 2, self.stride, self.channels)
        rows[:, 0] = 0
        rows[:, -1] = 0


def _convolve(grid: _Grid, conv: _Conv, out: np.ndarray, scratch: np.ndarray) -> np.ndarray:
    """``out`` (positions, C_out) = the convolution of ``grid`` (bias included)."""
    n, stride = grid.positions, grid.stride
    for index, (dy, dx) in enumerate(conv.taps):
        start = (dy + 1) * stride + dx + 1  # result position m reads padded pixel m + start
        source = grid.data[start : start + n]
        if index == 0:
            np.matmul(source, conv.weight[index], out=out)
        else:
            np.matmul(source, conv.weight[index], out=scratch)
            out += scratch
    out += conv.bias
    return out


class NumpySynthesis:
    """D of a Mentzer et al. model, from its state dict (numpy arrays, as ``safetensors.numpy`` loads
    them) and config: ``__call__(z_hat)`` maps (K, h, w) latent values to (8h, 8w, 3) float32 on
    the 0-255 scale, not clamped."""

    def __init__(self, state: dict[str, np.ndarray], config) -> None:
        bn = config.batch_norm

        def norm(prefix: str) -> str | None:
            return prefix if bn else None

        self.first = upconv_as_conv(state, "decoder.0.0", norm("decoder.0.1"))
        self.blocks: list[list[tuple[_Conv, _Conv]]] = []
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
        grid = _Grid(h, w, K)
        grid.interior()[...] = z_hat.transpose(1, 2, 0)
        grid = self._upsample(grid, self.first, relu=True)  # (2h, 2w, n)
        grid = self._body(grid)
        grid = self._upsample(grid, self.up2, relu=True)  # (4h, 4w, n/2)
        out = self._phases(grid, self.up3)  # (4h, W4 + 2, 2, 2, 3)
        H, W = grid.height, grid.width
        image = out[:, :W].transpose(0, 2, 1, 3, 4).reshape(2 * H, 2 * W, 3)
        return image * self.std + self.mean

    def _phases(self, grid: _Grid, conv: _Conv) -> np.ndarray:
        n = grid.positions
        out = np.empty((n, conv.out_channels), np.float32)
        _convolve(grid, conv, out, np.empty_like(out))
        return out.reshape(grid.height, grid.stride, 2, 2, conv.out_channels // 4)

    def _upsample(self, grid: _Grid, conv: _Conv, relu: bool) -> _Grid:
        phases = self._phases(grid, conv)
        if relu:
            np.maximum(phases, 0, out=phases)
        H, W, cout = grid.height, grid.width, conv.out_channels // 4
        result = _Grid(2 * H, 2 * W, cout)
        result.interior().reshape(H, 2, W, 2, cout)[...] = phases[:, :W].transpose(0, 2, 1, 3, 4)
        return result

    def _conv_into(self, grid: _Grid, conv: _Conv, target: _Grid, scratch: np.ndarray) -> None:
        _convolve(grid, conv, target.result_view(), scratch)
        target.clear_border_columns()

    def _body(self, x: _Grid) -> _Grid:
        """``x + tail(groups(x))``, each group ``g + blocks(g)``, each block ``b + conv(relu(conv(b)))``."""
        H, W, C = x.height, x.width, x.channels
        scratch = np.empty((x.positions, C), np.float32)
        a, t = _Grid(H, W, C), _Grid(H, W, C)
        current = _Grid(H, W, C)
        current.data[...] = x.data
        for group in self.blocks:
            group_input = current.data.copy()
            for conv1, conv2 in group:
                self._conv_into(current, conv1, a, scratch)
                np.maximum(a.data, 0, out=a.data)
                self._conv_into(a, conv2, t, scratch)
                current.data += t.data
            current.data += group_input
        self._conv_into(current, self.tail, t, scratch)
        t.data += x.data
        return t


def to_pixels(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W, 3) float on the 0-255 scale, cropped to ``height`` x ``width``, clamped and rounded to
    uint8 (half to even, as :func:`imgcomp.tensors.tensor_to_image`)."""
    cropped = image[:height, :width]
    return np.rint(np.clip(cropped, 0, 255)).astype(np.uint8)
