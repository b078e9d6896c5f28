"""Compress and decompress images with a trained context-model codec (Mentzer et al. 2018).

Encoding: pad to a multiple of 8 (edge replication), run E with the importance head of the
requested quality, quantize, and range-code the symbol volume wavefront by wavefront with P
(:mod:`imgcomp.entropy.wavefront`). The payload starts with ``K'``, the number of leading
channels that hold anything but the masked-out symbol (``Q(0)``, or the model's own masked-out
symbol; see ``CodecConfig.mask_symbol``), coded with a uniform distribution; the
channels after it, which the importance map masked out everywhere, are not coded at all. P is
causal along the channel axis, so this changes no probability of a coded symbol; it makes low
qualities much faster to code. The latent is split into tiles of at most
``TILE_LATENT`` x ``TILE_LATENT`` (1024 x 1024 pixels) coded one after another, each with its own
context, which bounds memory for large images. Format version 3 ends the payload with the
low-pass correction layer of :mod:`imgcomp.lowpass` (or a symbol saying there is none): the
encoder decodes its own latent to fit it. Decoding mirrors all of it and crops the padding off.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from imgcomp import bitstream
from imgcomp.entropy import SymbolDecoder, SymbolEncoder, WavefrontContextModel
from imgcomp.entropy.range_coder import uniform_probabilities
from imgcomp.errors import ImgcompError
from imgcomp.io import ImageSource, load_image
from imgcomp.lowpass import (
    AUTO, DEFAULT_LOWPASS, LowpassSettings, apply_offsets, choose_lowpass, decode_offsets, encode_offsets, fit_offsets,
)
from imgcomp.models.export import LoadedModel
from imgcomp.models.mentzer2018 import DOWNSAMPLING
from imgcomp.refine import refine_latent
from imgcomp.tensors import image_to_tensor, pad_to_multiple, tensor_to_image
from imgcomp.zoo import find_model_by_tag, get_model

TILE_LATENT = 128
MAX_CACHED_SCHEDULES = 4


@dataclass
class EncodeResult:
    """A compressed file and what it cost."""

    data: bytes
    width: int
    height: int
    quality: int
    estimated_bits: float  # ideal coding cost: sum -log2 P (eq. 13) plus the low-pass layer's
    payload_bytes: int
    seconds: float
    reconstruction: np.ndarray | None = field(default=None, repr=False)
    lowpass: LowpassSettings | None = None  # the low-pass layer's settings in the file (None: no layer)

    @property
    def header_bytes(self) -> int:
        return len(self.data) - self.payload_bytes

    @property
    def bpp(self) -> float:
        return 8 * len(self.data) / (self.width * self.height)


def latent_tiles(height: int, width: int) -> list[tuple[int, int, int, int]]:
    """(top, left, height, width) of the latent tiles, in coding order."""
    return [
        (top, left, min(TILE_LATENT, height - top), min(TILE_LATENT, width - left))
        for top in range(0, height, TILE_LATENT)
        for left in range(0, width, TILE_LATENT)
    ]


def _wavefront(model: LoadedModel, shape: tuple[int, int, int]) -> WavefrontContextModel:
    """The wavefront schedule for one tile shape, built once per model and shape."""
    schedules = model.cache.setdefault("wavefront", {})
    if shape not in schedules:
        if len(schedules) >= MAX_CACHED_SCHEDULES:  # each holds index arrays of tens of MB
            schedules.pop(next(iter(schedules)))
        codec = model.model
        schedules[shape] = WavefrontContextModel(codec.context_model, codec.symbol_inputs(), shape)
    return schedules[shape]


def _heads(model: LoadedModel) -> int:
    return model.config.importance_heads


def _check_quality(model: LoadedModel, quality: int | None) -> int:
    heads = _heads(model)
    if quality is None:
        return heads
    if not 1 <= quality <= heads:
        raise ImgcompError(f"quality must be between 1 and {heads} for this model, got {quality}")
    return quality


def encode_image(
    image: ImageSource, quality: int | None = None,
    model: str | os.PathLike | LoadedModel | None = None, keep_reconstruction: bool = False,
    lowpass: LowpassSettings | Literal["auto"] | None = AUTO, refine_steps: int = 0,
) -> EncodeResult:
    """Compress an image; the full-detail API behind :func:`compress`.

    ``lowpass`` sets the low-pass correction layer (:mod:`imgcomp.lowpass`): ``"auto"`` picks its
    settings for this image by rate-distortion search (:func:`~imgcomp.lowpass.choose_lowpass`),
    ``None`` leaves it out (the file then holds only what Mentzer et al. code). ``refine_steps`` > 0
    optimises the latent for this image first (:mod:`imgcomp.refine`): smaller, better files for
    a slower encode."""
    started = time.perf_counter()
    if refine_steps < 0:
        raise ImgcompError(f"refine_steps must be >= 0, got {refine_steps}")
    if lowpass is not None and lowpass != AUTO and not isinstance(lowpass, LowpassSettings):
        raise ImgcompError(f"lowpass must be LowpassSettings, {AUTO!r} or None, got {lowpass!r}")
    loaded = get_model(model)
    quality = _check_quality(loaded, quality)
    pixels = load_image(image)
    height, width = pixels.shape[:2]
    if height * width > bitstream.MAX_PIXELS or max(height, width) > bitstream.MAX_SIDE:
        raise ImgcompError(f"image {width}x{height} is too large for the .icz format")
    codec = loaded.model
    x = pad_to_multiple(image_to_tensor(pixels), DOWNSAMPLING).contiguous(memory_format=torch.channels_last)
    objective_lowpass = DEFAULT_LOWPASS if lowpass == AUTO else lowpass
    z, mask = refine_latent(codec, x, quality - 1, refine_steps, height, width, objective_lowpass)
    with torch.no_grad():
        symbols = codec.context_symbols(codec.quantizer.symbols(z), mask)[0]
        active = _active_channels(symbols, codec.masked_out_symbol())
        encoder = SymbolEncoder()
        bits = _code_active_channels(encoder, active, symbols.shape[0])
        for top, left, th, tw in latent_tiles(*symbols.shape[1:]) if active else []:
            tile = symbols[:active, top : top + th, left : left + tw].contiguous()
            wavefront = _wavefront(loaded, tuple(tile.shape))
            bits += wavefront.encode(tile, encoder)
        decoded = _reconstruct(codec, symbols, height, width) if keep_reconstruction or lowpass is not None else None
        offsets = None
        if lowpass == AUTO:
            lowpass, offsets = choose_lowpass(pixels, decoded, bits)
        elif lowpass is not None:
            offsets = fit_offsets(pixels, decoded, lowpass)
        bits += encode_offsets(encoder, offsets, lowpass)
        payload = encoder.finish()
        reconstruction = None
        if keep_reconstruction:
            reconstruction = decoded if offsets is None else apply_offsets(decoded, offsets, lowpass)
    header = bitstream.Header(width, height, quality, bitstream.model_tag(loaded.weights_sha256))
    data = bitstream.pack(header, payload)
    return EncodeResult(
        data, width, height, quality, bits, len(payload), time.perf_counter() - started, reconstruction,
        lowpass,
    )


def _active_channels(symbols: torch.Tensor, masked_out: int) -> int:
    """1 + the last channel holding any symbol other than the masked-out one (0 if none)."""
    used = (symbols != masked_out).flatten(1).any(dim=1).nonzero()
    return int(used.max()) + 1 if used.numel() else 0


def _code_active_channels(encoder: SymbolEncoder, active: int, channels: int) -> float:
    encoder.push(np.array([active]), uniform_probabilities(channels + 1))
    return float(np.log2(channels + 1))


def _reconstruct(codec, symbols: torch.Tensor, height: int, width: int) -> np.ndarray:
    z_hat = codec.symbol_values(symbols)[None].contiguous(memory_format=torch.channels_last)
    x_hat = codec.decode_latent(z_hat)
    return tensor_to_image(x_hat[:, :, :height, :width])


def decode_symbols(
    data: bytes, model: str | os.PathLike | LoadedModel | None = None
) -> tuple[bitstream.Header, LoadedModel, torch.Tensor]:
    """Parse a file and decode its symbol volume (K, h, w)."""
    header, loaded, symbols, _ = _decode(data, model)
    return header, loaded, symbols


def _decode(
    data: bytes, model: str | os.PathLike | LoadedModel | None
) -> tuple[bitstream.Header, LoadedModel, torch.Tensor, tuple[np.ndarray, LowpassSettings] | None]:
    """Header, model, symbol volume and the low-pass layer (None if the file has none)."""
    header, payload = bitstream.unpack(data)
    if model is None:
        loaded = find_model_by_tag(header.model_tag)
    else:
        loaded = get_model(model)
        if bitstream.model_tag(loaded.weights_sha256) != header.model_tag:
            raise ImgcompError(
                "file was made with a different model (its tag "
                f"{header.model_tag.hex()} does not match {loaded.weights_sha256[:4]})"
            )
    _check_quality(loaded, header.quality)
    K = loaded.config.latent_channels
    h = -(-header.height // DOWNSAMPLING)
    w = -(-header.width // DOWNSAMPLING)
    symbols = torch.full((K, h, w), loaded.model.masked_out_symbol(), dtype=torch.int64)
    decoder = SymbolDecoder(payload)
    active = int(decoder.pull(uniform_probabilities(K + 1))[0])
    with torch.no_grad():
        for top, left, th, tw in latent_tiles(h, w) if active else []:
            wavefront = _wavefront(loaded, (active, th, tw))
            symbols[:active, top : top + th, left : left + tw] = wavefront.decode(decoder)
    lowpass = None
    if header.version >= 3:
        offsets, settings = decode_offsets(decoder, header.height, header.width)
        lowpass = None if settings is None else (offsets, settings)
    return header, loaded, symbols, lowpass


def decode_image(data: bytes, model: str | os.PathLike | LoadedModel | None = None) -> np.ndarray:
    """Decompress to an (H, W, 3) uint8 array."""
    header, loaded, symbols, lowpass = _decode(data, model)
    with torch.no_grad():
        pixels = _reconstruct(loaded.model, symbols, header.height, header.width)
    return pixels if lowpass is None else apply_offsets(pixels, *lowpass)


def compress(
    image: ImageSource, quality: int | None = None,
    model: str | os.PathLike | LoadedModel | None = None, refine_steps: int = 0,
) -> bytes:
    """Compress an image (path, bytes, PIL image or (H, W, 3) uint8 array) to ``.icz`` bytes.

    ``quality`` picks the importance head (1 = smallest file); the default is the highest.
    ``refine_steps`` > 0 trades encode time for smaller, better files (:mod:`imgcomp.refine`).
    """
    return encode_image(image, quality, model, refine_steps=refine_steps).data


def decompress(data: bytes, model: str | os.PathLike | LoadedModel | None = None, as_array: bool = False):
    """Decompress ``.icz`` bytes to a PIL image (or an (H, W, 3) uint8 array)."""
    pixels = decode_image(data, model)
    if as_array:
        return pixels
    from PIL import Image

    return Image.fromarray(pixels, "RGB")
