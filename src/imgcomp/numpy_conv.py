"""Convolutions in numpy for the torch-free decoders of any system (no system knowledge here).

An image of ``C`` channels is held flat, row-major, in a zero-bordered buffer of width ``W + 2``
(:class:`Grid`). A 3x3 convolution with padding 1 is then nine matrix products (:func:`convolve`):
the tap ``(dy, dx)`` of every output position is the same buffer shifted by ``dy * (W + 2) + dx``,
a contiguous slice, so no im2col copy is made. The two border columns of the result are garbage
and are zeroed (they are the next buffer's border). A convolution is a :class:`TapConv`: one
``(C_in, C_out)`` matrix per input offset.

A convolution whose kernel equals its stride ``f`` (:class:`BlockConv`) touches each input pixel
once: transposed, it is one matrix product per pixel to ``f * f * C_out`` values and depth-to-space
(:func:`block_upsample`); strided, space-to-depth and one matrix product per output pixel
(:func:`block_downsample`).

Everything is float32, in another order than torch's, so results may differ from torch's by
float rounding; systems test their decoders against their torch models.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TAPS_3X3 = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]


@dataclass
class TapConv:
    """A convolution as per-tap matrices: ``weight[t]`` is (C_in, C_out) for input offset ``taps[t]``."""

    taps: list[tuple[int, int]]  # (dy, dx) in -1..1
    weight: np.ndarray  # (len(taps), C_in, C_out) float32, contiguous per tap
    bias: np.ndarray  # (C_out,) float32

    @property
    def out_channels(self) -> int:
        return self.weight.shape[2]


def conv3x3(weight: np.ndarray, bias: np.ndarray | None) -> TapConv:
    """``nn.Conv2d(C_in, C_out, 3, padding=1)`` of torch weight (C_out, C_in, 3, 3) and bias as nine tap matrices."""
    mats = np.stack([weight[:, :, dy + 1, dx + 1].T for dy, dx in TAPS_3X3])
    bias = np.zeros(weight.shape[0]) if bias is None else bias
    return TapConv(list(TAPS_3X3), np.ascontiguousarray(mats, np.float32), np.asarray(bias, np.float32))


class Grid:
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
        """Where a convolution's result goes: position ``y * (W + 2) + x`` lands on pixel (y, x).
        Read, it is every pixel in that order (and the border columns): the input of a per-pixel
        matrix product."""
        return self.data[self.stride + 1 : self.stride + 1 + self.positions]

    def clear_border_columns(self) -> None:
        rows = self.data[: (self.height + 2) * self.stride].reshape(self.height + 2, self.stride, self.channels)
        rows[:, 0] = 0
        rows[:, -1] = 0


def convolve(grid: Grid, conv: TapConv, out: np.ndarray, scratch: np.ndarray) -> np.ndarray:
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


def conv_into(grid: Grid, conv: TapConv, target: Grid, scratch: np.ndarray) -> None:
    """``target`` = the convolution of ``grid`` (same size), its border kept zero; ``scratch``
    is (positions, C_out) float32."""
    convolve(grid, conv, target.result_view(), scratch)
    target.clear_border_columns()


@dataclass
class BlockConv:
    """A convolution with kernel = stride = ``factor`` as one matrix: transposed, (C_in, f * f * C_out)
    in output order (row, column, channel); strided, (f * f * C_in, C_out) in input order."""

    factor: int
    weight: np.ndarray  # float32, contiguous
    bias: np.ndarray  # float32: (f * f * C_out,) transposed, (C_out,) strided


def transposed_block_conv(weight: np.ndarray, bias: np.ndarray) -> BlockConv:
    """``nn.ConvTranspose2d(C_in, C_out, f, stride=f)`` of torch weight (C_in, C_out, f, f): output
    pixel ``f * i + r`` (per axis) is input pixel ``i`` through tap ``r``."""
    cin, cout, factor, _ = weight.shape
    mat = weight.transpose(0, 2, 3, 1).reshape(cin, factor * factor * cout)
    return BlockConv(factor, np.ascontiguousarray(mat, np.float32), np.tile(bias, factor * factor).astype(np.float32))


def strided_block_conv(weight: np.ndarray, bias: np.ndarray) -> BlockConv:
    """``nn.Conv2d(C_in, C_out, f, stride=f)`` of torch weight (C_out, C_in, f, f)."""
    cout, cin, factor, _ = weight.shape
    mat = weight.transpose(2, 3, 1, 0).reshape(factor * factor * cin, cout)
    return BlockConv(factor, np.ascontiguousarray(mat, np.float32), np.asarray(bias, np.float32))


def leaky_relu_(x: np.ndarray, slope: float) -> np.ndarray:
    """``x if x > 0 else slope * x`` in place (as ``max(x, slope x)``, exact for 0 <= slope < 1)."""
    return np.maximum(x, x * np.float32(slope), out=x)


def block_upsample(grid: Grid, conv: BlockConv, negative_slope: float | None = None) -> np.ndarray:
    """The transposed convolution of ``grid`` (bias included; then a leaky ReLU of
    ``negative_slope`` if given) as an (H, f, W, f, C_out) view: assign or add it to
    ``target.interior().reshape(H, f, W, f, C_out)`` of an (f H, f W) grid."""
    f = conv.factor
    out = np.matmul(grid.result_view(), conv.weight)
    out += conv.bias
    if negative_slope is not None:
        leaky_relu_(out, negative_slope)
    return out.reshape(grid.height, grid.stride, f, f, -1)[:, : grid.width].transpose(0, 2, 1, 3, 4)


def block_downsample(grid: Grid, conv: BlockConv) -> np.ndarray:
    """The strided convolution of ``grid`` (bias included), (H / f, W / f, C_out); H and W are
    multiples of f."""
    f, (H, W, C) = conv.factor, grid.interior().shape
    blocks = grid.interior().reshape(H // f, f, W // f, f, C).transpose(0, 2, 1, 3, 4).reshape(-1, f * f * C)
    out = np.matmul(blocks, conv.weight)
    out += conv.bias
    return out.reshape(H // f, W // f, -1)


def to_pixels(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W, 3) float on the 0-255 scale, cropped to ``height`` x ``width``, clamped and rounded to
    uint8 (half to even, as :func:`imgcomp.tensors.tensor_to_image`)."""
    cropped = image[:height, :width]
    return np.rint(np.clip(cropped, 0, 255)).astype(np.uint8)
