"""Fast causal coding with the 3-D context model: one wavefront of symbols per step.

With the masks of :mod:`imgcomp.models.context_model`, every tap of every layer points from a
symbol (c, h, w) to positions with a smaller or (for the "B" layers) equal value of
``t = 4c + 2h + w``, and the first layer's taps to strictly smaller ``t``. So all symbols with the
same ``t`` depend only on symbols of earlier wavefronts and can be decoded together:
``4(K-1) + 2(H-1) + W`` steps instead of ``K*H*W`` (about 350 instead of 196,608 for a 768x512 image).

Each step evaluates the four masked convolutions only at that wavefront's positions, gathering
each layer's kept taps from cached activations of earlier steps (one gather and one matrix product
per layer). Encoder and decoder run exactly this code with the same batch shapes, so their
probabilities are bit-identical (the determinism rule of DESIGN.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from imgcomp.entropy.range_coder import SymbolDecoder, SymbolEncoder, coder_probabilities, ideal_bits
from imgcomp.models.context_model import ContextModel3D, MaskedConv3d

WAVEFRONT_WEIGHTS = (4, 2, 1)  # t = 4c + 2h + w


def wavefront_index(c, h, w):
    """The decoding step of symbol (c, h, w)."""
    return WAVEFRONT_WEIGHTS[0] * c + WAVEFRONT_WEIGHTS[1] * h + WAVEFRONT_WEIGHTS[2] * w


@dataclass
class _Layer:
    weight: torch.Tensor  # (taps * C_in, C_out)
    bias: torch.Tensor  # (C_out,)
    offsets: torch.Tensor  # flat offsets of the kept taps in the padded volume


class WavefrontContextModel:
    """Evaluates a :class:`ContextModel3D` wavefront by wavefront over a (K, H, W) volume."""

    def __init__(self, model: ContextModel3D, centers: torch.Tensor, shape: tuple[int, int, int]):
        self.shape = shape
        K, H, W = shape
        self.padded = (K + 2, H + 2, W + 2)
        self.centers = centers.detach().float()
        layers = model.layers()
        self.layers = [self._prepare(layer) for layer in layers]
        self.channels = [layer.out_channels for layer in layers]
        c, h, w = torch.meshgrid(torch.arange(K), torch.arange(H), torch.arange(W), indexing="ij")
        c, h, w = c.flatten(), h.flatten(), w.flatten()
        steps = wavefront_index(c, h, w)
        order = torch.argsort(steps, stable=True)
        self.raster_order = order  # position i of the schedule is raster index order[i]
        counts = torch.bincount(steps[order])
        counts = counts[counts > 0]  # small volumes leave some values of t empty
        self.bounds = [0] + torch.cumsum(counts, 0).tolist()
        Kp, Hp, Wp = self.padded
        self.flat = (((c[order] + 1) * Hp + (h[order] + 1)) * Wp + (w[order] + 1)).contiguous()

        # Gather indices of every symbol's kept taps, once: (positions, taps), in schedule order.
        # Layers 2-4 all use mask "B" and share one index.
        if any(not torch.equal(l.offsets, self.layers[1].offsets) for l in self.layers[2:]):
            raise ValueError("the later context-model layers must share one mask")
        self.first_index = (self.flat[:, None] + self.layers[0].offsets[None, :]).contiguous()
        self.later_index = (self.flat[:, None] + self.layers[1].offsets[None, :]).contiguous()

    def _prepare(self, layer: MaskedConv3d) -> _Layer:
        _, Hp, Wp = self.padded
        taps = layer.taps()
        weight = layer.weight.detach().float()
        columns = torch.stack([weight[:, :, dc + 1, dh + 1, dw + 1] for dc, dh, dw in taps])
        matrix = columns.permute(0, 2, 1).reshape(len(taps) * layer.in_channels, layer.out_channels)
        offsets = torch.tensor([(dc * Hp + dh) * Wp + dw for dc, dh, dw in taps], dtype=torch.int64)
        return _Layer(matrix.contiguous(), layer.bias.detach().float().clone(), offsets)

    @property
    def num_steps(self) -> int:
        return len(self.bounds) - 1

    def _buffers(self) -> list[torch.Tensor]:
        size = int(np.prod(self.padded))
        return [torch.zeros(size, 1)] + [torch.zeros(size, ch) for ch in self.channels[:3]]

    @staticmethod
    def _conv(layer: _Layer, source: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        gathered = source.index_select(0, index.flatten()).view(index.shape[0], -1)
        return torch.addmm(layer.bias, gathered, layer.weight)

    def step_logits(self, buffers: list[torch.Tensor], step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (n, L) of the symbols of one wavefront, and their flat buffer indices."""
        values, h1, h2, h3 = buffers
        lo, hi = self.bounds[step], self.bounds[step + 1]
        flat, first, later = self.flat[lo:hi], self.first_index[lo:hi], self.later_index[lo:hi]
        l1, l2, l3, l4 = self.layers
        a1 = torch.relu(self._conv(l1, values, first))
        h1[flat] = a1
        h2[flat] = torch.relu(self._conv(l2, h1, later))
        h3[flat] = a1 + self._conv(l3, h2, later)
        return self._conv(l4, h3, later), flat

    def all_logits(self, symbols: torch.Tensor) -> torch.Tensor:
        """Logits (L, K, H, W) of every symbol, computed wavefront by wavefront (for tests)."""
        buffers = self._buffers()
        out = torch.empty(int(np.prod(self.shape)), self.centers.numel())
        values = self.centers[symbols.flatten()[self.raster_order]]
        for step in range(self.num_steps):
            logits, flat = self.step_logits(buffers, step)
            lo, hi = self.bounds[step], self.bounds[step + 1]
            out[self.raster_order[lo:hi]] = logits
            buffers[0][flat, 0] = values[lo:hi]
        return out.T.reshape(-1, *self.shape)

    def encode(self, symbols: torch.Tensor, encoder: SymbolEncoder) -> float:
        """Code a (K, H, W) volume of symbol indices; returns the ideal cost in bits."""
        buffers = self._buffers()
        ordered = symbols.flatten()[self.raster_order]
        values = self.centers[ordered]
        ordered_np = ordered.numpy()
        bits = 0.0
        for step in range(self.num_steps):
            logits, flat = self.step_logits(buffers, step)
            lo, hi = self.bounds[step], self.bounds[step + 1]
            probabilities = coder_probabilities(logits)
            encoder.push(ordered_np[lo:hi], probabilities)
            bits += ideal_bits(probabilities, ordered_np[lo:hi])
            buffers[0][flat, 0] = values[lo:hi]
        return bits

    def decode(self, decoder: SymbolDecoder) -> torch.Tensor:
        """Decode a (K, H, W) volume of symbol indices."""
        buffers = self._buffers()
        ordered = torch.empty(int(np.prod(self.shape)), dtype=torch.int64)
        for step in range(self.num_steps):
            logits, flat = self.step_logits(buffers, step)
            lo, hi = self.bounds[step], self.bounds[step + 1]
            decoded = torch.from_numpy(decoder.pull(coder_probabilities(logits)))
            ordered[lo:hi] = decoded
            buffers[0][flat, 0] = self.centers[decoded]
        symbols = torch.empty_like(ordered)
        symbols[self.raster_order] = ordered
        return symbols.view(self.shape)
