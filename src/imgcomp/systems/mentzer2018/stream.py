"""Mentzer et al. (2018) stream coding: image -> symbol volume -> range-coded payload, and back.

Encoding: pad to a multiple of 8 (edge replication), run E with the importance head of the
requested quality (optionally refining the latent for this image, :mod:`.refine`), quantize, and
range-code the symbol volume wavefront by wavefront with P (:mod:`.wavefront`). The payload starts
with ``K'``, the number of leading channels that hold anything but the masked-out symbol
(``Q(0)``, or the model's own masked-out symbol; see ``CodecConfig.mask_symbol``), coded with a
uniform distribution; the channels after it, which the importance map masked out everywhere, are
not coded at all. P is causal along the channel axis, so this changes no probability of a coded
symbol; it makes low qualities much faster to code. The latent is split into tiles of at most
``TILE_LATENT`` x ``TILE_LATENT`` (1024 x 1024 pixels) coded one after another, each with its own
context, which bounds memory for large images. Decoding mirrors all of it and crops the padding.

Stream versions (the container's per-system stream version; docs/format.md):

1. P's probabilities from the float wavefront (:mod:`.wavefront`): float32 BLAS products and
   ``exp``, so the coded bytes depend on the machine (BLAS kernel, libm). Written by imgcomp
   0.2-0.5 (container versions 2 and 3) and by this version for a model folder without an integer
   P file; still read.
2. (the default) P's frequencies from the integer-exact model
   (:mod:`.integer_context`, the model folder's ``context-int.safetensors``): the same on every
   machine. Everything else as version 1 (uniform ``K'``, tiles, schedule). Its files' model tag
   covers the integer file too (:func:`model_tag`), and the low-pass section that goes with it is
   coded with exact integer frequencies (``imgcomp.postfilter.lowpass``, coding version 2).

A change to the arithmetic that turns P into probabilities needs a new stream version.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from imgcomp.entropy import SymbolDecoder, SymbolEncoder, uniform_probabilities
from imgcomp.errors import ImgcompError
from imgcomp.systems.base import Decoded, Encoded
from imgcomp.systems.mentzer2018.config import DOWNSAMPLING
from imgcomp.systems.mentzer2018.refine import refine_latent
from imgcomp.systems.mentzer2018.wavefront import WavefrontContextModel
from imgcomp.systems.mentzer2018.tags import (  # noqa: F401  (re-exported: part of the stream's surface)
    CONTEXT_FILE, EXACT_STREAM_VERSION, FLOAT_STREAM_VERSION, _folder_params_sha256, context_file, model_tag,
)
from imgcomp.systems.mentzer2018.symbols import (  # noqa: F401  (latent_tiles, latent_size: the stream's surface)
    MAX_CACHED_SCHEDULES, TILE_LATENT, integer_coder, integer_params, latent_size, latent_tiles, pull_symbols,
)
from imgcomp.tensors import image_to_tensor, pad_to_multiple, tensor_to_image

STREAM_VERSION = EXACT_STREAM_VERSION  # written by default
READABLE_STREAM_VERSIONS = (FLOAT_STREAM_VERSION, EXACT_STREAM_VERSION)


def _wavefront(loaded, shape: tuple[int, int, int]) -> WavefrontContextModel:
    """The float wavefront schedule for one tile shape, built once per model and shape."""
    schedules = loaded.cache.setdefault("wavefront", {})
    if shape not in schedules:
        if len(schedules) >= MAX_CACHED_SCHEDULES:  # each holds index arrays of tens of MB
            schedules.pop(next(iter(schedules)))
        codec = loaded.model
        schedules[shape] = WavefrontContextModel(codec.context_model, codec.symbol_inputs(), shape)
    return schedules[shape]


def default_stream_version(loaded) -> int:
    """2 when the model has its integer P; else 1 (float P, machine-dependent), with a warning."""
    if integer_params(loaded) is not None:
        return EXACT_STREAM_VERSION
    if not loaded.cache.get("warned_float_stream"):
        loaded.cache["warned_float_stream"] = True
        warnings.warn(
            f"model {loaded.path} has no {CONTEXT_FILE}: writing stream version 1, whose files may not decode "
            "on a machine with another CPU or BLAS (build it with python -m imgcomp.systems.mentzer2018.integer_context.build)",
            stacklevel=3,
        )
    return FLOAT_STREAM_VERSION


def _coder(loaded, shape: tuple[int, int, int], stream_version: int):
    """The tile coder of ``stream_version``: float wavefront (1) or integer wavefront (2)."""
    if stream_version == FLOAT_STREAM_VERSION:
        return _wavefront(loaded, shape)
    return integer_coder(loaded, shape)


def _active_channels(symbols: torch.Tensor, masked_out: int) -> int:
    """1 + the last channel holding any symbol other than the masked-out one (0 if none)."""
    used = (symbols != masked_out).flatten(1).any(dim=1).nonzero()
    return int(used.max()) + 1 if used.numel() else 0


def _code_active_channels(encoder: SymbolEncoder, active: int, channels: int) -> float:
    encoder.push(np.array([active]), uniform_probabilities(channels + 1))
    return float(np.log2(channels + 1))


def reconstruct(codec, symbols: torch.Tensor, height: int, width: int) -> np.ndarray:
    """D's output for a symbol volume, cropped to the image: (H, W, 3) uint8."""
    z_hat = codec.symbol_values(symbols)[None].contiguous(memory_format=torch.channels_last)
    x_hat = codec.decode_latent(z_hat)
    return tensor_to_image(x_hat[:, :, :height, :width])


def image_symbols(loaded, pixels: np.ndarray, quality: int, refine_steps: int = 0, objective_lowpass=None) -> torch.Tensor:
    """The symbol volume (K, h, w) E and Q give an image at ``quality`` (with refinement)."""
    height, width = pixels.shape[:2]
    codec = loaded.model
    x = pad_to_multiple(image_to_tensor(pixels), DOWNSAMPLING).contiguous(memory_format=torch.channels_last)
    z, mask = refine_latent(codec, x, quality - 1, refine_steps, height, width, objective_lowpass)
    with torch.no_grad():
        return codec.context_symbols(codec.quantizer.symbols(z), mask)[0]


def encode_symbols(loaded, symbols: torch.Tensor, stream_version: int) -> tuple[bytes, float]:
    """The payload of a symbol volume (K, h, w) and its ideal cost in bits."""
    with torch.no_grad():
        active = _active_channels(symbols, loaded.model.masked_out_symbol())
        encoder = SymbolEncoder()
        bits = _code_active_channels(encoder, active, symbols.shape[0])
        for top, left, th, tw in latent_tiles(*symbols.shape[1:]) if active else []:
            tile = symbols[:active, top : top + th, left : left + tw].contiguous()
            coder = _coder(loaded, tuple(tile.shape), stream_version)
            bits += coder.encode(tile if stream_version == FLOAT_STREAM_VERSION else tile.numpy(), encoder)
    return encoder.finish(), bits


def encode(
    loaded, pixels: np.ndarray, quality: int, *, refine_steps: int = 0, objective_lowpass=None,
    stream_version: int | None = None,
) -> Encoded:
    """Code an image: ``K'`` and the active channels' symbols, tile by tile, in ``stream_version``
    (default: 2 if the model has its integer P, else 1)."""
    if stream_version is None:
        stream_version = default_stream_version(loaded)
    elif stream_version not in READABLE_STREAM_VERSIONS:
        raise ImgcompError(f"mentzer2018 writes stream versions {READABLE_STREAM_VERSIONS}, not {stream_version}")
    height, width = pixels.shape[:2]
    symbols = image_symbols(loaded, pixels, quality, refine_steps, objective_lowpass)
    payload, bits = encode_symbols(loaded, symbols, stream_version)

    def decoded() -> np.ndarray:
        with torch.no_grad():
            return reconstruct(loaded.model, symbols, height, width)

    return Encoded(payload, bits, decoded, stream_version)


def decode_symbols(loaded, decoder: SymbolDecoder, height: int, width: int, stream_version: int = FLOAT_STREAM_VERSION) -> torch.Tensor:
    """Pull the symbol volume (K, h, w) of an image of ``height`` x ``width`` from ``decoder``."""
    with torch.no_grad():
        symbols = pull_symbols(
            decoder, loaded.config.latent_channels, height, width, loaded.model.masked_out_symbol(),
            lambda shape: _coder(loaded, shape, stream_version),
        )
    return torch.from_numpy(symbols)


def decode(loaded, payload: bytes, width: int, height: int, quality: int, stream_version: int) -> Decoded:
    """Decode a payload to pixels; the decoder is returned for what follows in the same stream."""
    if stream_version not in READABLE_STREAM_VERSIONS:
        raise ImgcompError(
            f"mentzer2018 stream version {stream_version} is not readable (this imgcomp reads "
            f"{', '.join(map(str, READABLE_STREAM_VERSIONS))})")
    decoder = SymbolDecoder(payload)
    symbols = decode_symbols(loaded, decoder, height, width, stream_version)
    with torch.no_grad():
        pixels = reconstruct(loaded.model, symbols, height, width)
    return Decoded(pixels, decoder)
