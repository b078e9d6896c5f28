"""Low-pass correction layer: coded block means of what the auto-encoder got wrong.

Not part of Mentzer et al. (2018). Our auto-encoders, trained on MS-SSIM (which compares means
only at its coarsest scale, weakly) on 128-pixel crops (too small for that scale), reconstruct
texture but let local brightness and colour drift by tens of levels. The encoder decodes its own
latent, measures the mean residual ``x - x_hat`` over ``B x B`` pixel blocks, quantizes it with
step ``s`` and range-codes it after the latent; the decoder adds the bicubically upsampled block
offsets to its reconstruction. With ``B = 32``, ``s = 4`` on the validation photos this costs
0.006-0.008 bpp per image and, for the first shipped models, raises MS-SSIM by 0.01-0.04 and PSNR
by 5-9 dB at every quality. By default encoders choose ``B``, ``s`` (or no layer) per image by a
rate-distortion search (:func:`choose_lowpass`); the settings are coded in the section. Training
can target the corrected output (:func:`correct_tensor`).

Coding: each channel's offsets are predicted from the left neighbour (the first column from the
one above), and the residuals are coded with a discretised Laplace distribution whose scale is
sent per channel (one byte each). Two codings of the Laplace rows exist (the ``version`` of
:func:`encode_offsets` / :func:`decode_offsets`; the system's stream version picks it, see
docs/format.md): 1 (imgcomp 0.3-0.5 and stream-version-1 files) computes them with numpy's float
``exp`` and a float sum, whose last bits may differ between CPUs; 2 uses integer frequencies
(:func:`exact_laplace_probabilities`), identical on every machine.
"""

from __future__ import annotations

import decimal
import functools
import math
from dataclasses import dataclass

from typing import TYPE_CHECKING

import numpy as np

from imgcomp.entropy import SymbolDecoder, SymbolEncoder
from imgcomp.entropy.range_coder import ideal_bits, uniform_probabilities
from imgcomp.errors import ImgcompError

if TYPE_CHECKING:  # torch is imported where it is used: decoding with the numpy engine needs none
    import torch

BLOCK_SIZES = (16, 32, 64)  # coded as 1, 2, 3; 0 means no correction
MAX_STEP = 16
SCALE_UNIT = 4  # Laplace scale is sent in quarters: 1..255 -> 0.25..63.75
CHUNK = 4096  # offsets per batch of probability rows (bounds memory on huge images)
NO_SECTION_BITS = float(np.log2(len(BLOCK_SIZES) + 1))  # the block size code alone (0: no section)
CODING_VERSIONS = (1, 2)  # 1: float Laplace rows (machine-dependent); 2: exact integer frequencies
EXACT_TABLE_BITS = 20  # version 2: e[k] = round(2**20 exp(-k / scale))
EXACT_FREQUENCY_BITS = 20  # version 2: frequencies sum to 2**20


@dataclass(frozen=True)
class LowpassSettings:
    """Block size ``B`` in pixels and quantization step ``s`` in 0-255 levels."""

    block: int = 32
    step: int = 4

    def __post_init__(self) -> None:
        if self.block not in BLOCK_SIZES:
            raise ImgcompError(f"low-pass block size must be one of {BLOCK_SIZES}, got {self.block}")
        if not 1 <= self.step <= MAX_STEP:
            raise ImgcompError(f"low-pass step must be between 1 and {MAX_STEP}, got {self.step}")

    @property
    def limit(self) -> int:
        """Largest offset magnitude in steps: a block mean residual lies in [-255, 255]."""
        return math.ceil(255 / self.step)


DEFAULT_LOWPASS = LowpassSettings()
AUTO = "auto"  # encoders pick the settings per image (choose_lowpass)
SEARCH_STEPS = (2, 3, 4, 6, 8)  # tried with every block size, and no section at all
# mu of choose_lowpass: one dB of MS-SSIM is worth e^(1/mu) - 1 = 18% more bits. Picked among
# 3, 4, 5, 6, 8 on 12 training photos (data/trainsel), where it gave the best BD-rate.
RATE_TRADEOFF = 6.0
SEARCH_MAX_PIXELS = 1024 * 1024  # larger images are scored on a central window of this size


def _block_grid(height: int, width: int, block: int) -> tuple[int, int]:
    return -(-height // block), -(-width // block)


def _padded_residual(original: np.ndarray, decoded: np.ndarray, multiple: int) -> tuple[np.ndarray, np.ndarray]:
    """``original - decoded`` (H, W, 3) and a pixel count (H, W, 1), zero-padded to multiples of
    ``multiple``; integers, so block sums are exact in any order."""
    height, width = original.shape[:2]
    bh, bw = _block_grid(height, width, multiple)
    residual = np.zeros((bh * multiple, bw * multiple, 3), np.int64)
    count = np.zeros((bh * multiple, bw * multiple, 1), np.int64)
    residual[:height, :width] = original.astype(np.int64) - decoded
    count[:height, :width] = 1
    return residual, count


def _sum_blocks(values: np.ndarray, block: int) -> np.ndarray:
    """Sums over ``block`` x ``block`` blocks of (H, W, C) ``values`` whose sides are multiples of it."""
    rows, cols, channels = values.shape
    return values.reshape(rows // block, block, cols // block, block, channels).sum(axis=(1, 3))


def _means(sums: np.ndarray, counts: np.ndarray, height: int, width: int, block: int) -> np.ndarray:
    """Block means (3, bh, bw) from sums over a grid that may extend past the image's blocks."""
    bh, bw = _block_grid(height, width, block)
    return (sums[:bh, :bw] / counts[:bh, :bw]).transpose(2, 0, 1)


def block_means(original: np.ndarray, decoded: np.ndarray, block: int) -> np.ndarray:
    """Mean of ``original - decoded`` (both (H, W, 3) uint8) over each ``block`` x ``block`` block:
    float array (3, bh, bw). Blocks at the right and bottom edges average only the pixels they cover."""
    residual, count = _padded_residual(original, decoded, block)
    return _means(_sum_blocks(residual, block), _sum_blocks(count, block), *original.shape[:2], block)


def _block_means_every_size(original: np.ndarray, decoded: np.ndarray) -> dict[int, np.ndarray]:
    """:func:`block_means` for every size in ``BLOCK_SIZES`` at once: sums over the smallest
    blocks, added up for the larger ones (exact integers, so the means are the same)."""
    residual, count = _padded_residual(original, decoded, BLOCK_SIZES[-1])
    block = BLOCK_SIZES[0]
    sums, counts = _sum_blocks(residual, block), _sum_blocks(count, block)
    means = {}
    for size in BLOCK_SIZES:
        if size != block:
            factor, block = size // block, size
            sums, counts = _sum_blocks(sums, factor), _sum_blocks(counts, factor)
        means[size] = _means(sums, counts, *original.shape[:2], size)
    return means


def quantize_means(means: np.ndarray, settings: LowpassSettings) -> np.ndarray:
    """Block means in levels -> offsets in steps (int array), within the coder's range."""
    return np.clip(np.rint(means / settings.step), -settings.limit, settings.limit).astype(np.int64)


def fit_offsets(original: np.ndarray, decoded: np.ndarray, settings: LowpassSettings) -> np.ndarray:
    """Quantized block means of ``original - decoded`` (both (H, W, 3) uint8): int array (3, bh, bw)."""
    return quantize_means(block_means(original, decoded, settings.block), settings)


def apply_offsets(decoded: np.ndarray, offsets: np.ndarray, settings: LowpassSettings) -> np.ndarray:
    """``decoded`` (H, W, 3) uint8 plus the bicubically upsampled offsets, rounded and clipped
    (torch's bicubic; the encoder and the torch decoder)."""
    import torch
    import torch.nn.functional as F

    height, width = decoded.shape[:2]
    B = settings.block
    grid = torch.from_numpy(offsets.astype(np.float32) * settings.step)[None]
    up = F.interpolate(grid, size=(grid.shape[-2] * B, grid.shape[-1] * B), mode="bicubic", align_corners=False)
    up = up[0, :, :height, :width].permute(1, 2, 0).numpy()
    return np.clip(np.rint(decoded.astype(np.float32) + up), 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=32)
def bicubic_matrix(cells: int, factor: int, size: int) -> np.ndarray:
    """(size, cells) float64 matrix of 1-D bicubic upsampling by ``factor`` as torch computes it
    (``align_corners=False``, Keys' kernel with a = -0.75, source index clamped at the borders),
    for the first ``size`` outputs."""
    a = -0.75
    matrix = np.zeros((size, cells))
    for o in range(size):
        x = (o + 0.5) / factor - 0.5
        i = math.floor(x)
        t = x - i
        weights = (
            ((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a,
            ((a + 2) * t - (a + 3)) * t * t + 1,
            ((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1,
            ((a * (2 - t) - 5 * a) * (2 - t) + 8 * a) * (2 - t) - 4 * a,
        )
        for k, weight in enumerate(weights):
            matrix[o, min(max(i - 1 + k, 0), cells - 1)] += weight
    return matrix


def apply_offsets_numpy(decoded: np.ndarray, offsets: np.ndarray, settings: LowpassSettings) -> np.ndarray:
    """:func:`apply_offsets` without torch (the numpy decoder): the same bicubic upsampling as two
    matrix products in float64, so a pixel may differ from torch's float32 result by one level
    where the sum falls within rounding of a half."""
    height, width = decoded.shape[:2]
    B = settings.block
    rows = bicubic_matrix(offsets.shape[1], B, height)
    cols = bicubic_matrix(offsets.shape[2], B, width)
    grid = offsets.astype(np.float64) * settings.step
    up = np.einsum("hi,cij,wj->hwc", rows, grid, cols, optimize=True)
    return np.clip(np.rint(decoded + up), 0, 255).astype(np.uint8)


def _search_window(height: int, width: int) -> tuple[int, int, int, int]:
    """``(top, left, height, width)`` of the part of the image the search scores: all of it up to
    ``SEARCH_MAX_PIXELS``, else a central window aligned to the largest block."""
    if height * width <= SEARCH_MAX_PIXELS:
        return 0, 0, height, width
    align = BLOCK_SIZES[-1]
    rows = min(height, max(align, math.isqrt(SEARCH_MAX_PIXELS) // align * align))
    cols = min(width, max(align, SEARCH_MAX_PIXELS // rows // align * align))
    return (height - rows) // 2 // align * align, (width - cols) // 2 // align * align, rows, cols


def choose_lowpass(
    original: np.ndarray, decoded: np.ndarray, latent_bits: float, tradeoff: float = RATE_TRADEOFF
) -> tuple[LowpassSettings | None, np.ndarray | None]:
    """The layer's settings for this image by rate-distortion search, and its offsets.

    Tries every block size with the steps of ``SEARCH_STEPS`` and no section at all, and keeps
    the one that maximises ``MS-SSIM in dB - tradeoff * ln(bpp)``, bpp counting ``latent_bits``
    and the section's cost (:func:`offset_bits`). Settings are signalled in the section, so
    decoders need nothing new. To be cheap, MS-SSIM is estimated: the full-size scale's factors
    are those of the uncorrected image (a smooth offset barely changes local contrast and
    structure), and the coarser scales see the half-size decoded image plus the offsets
    upsampled straight to half size; images over ``SEARCH_MAX_PIXELS`` are scored on a central
    window of that size. Images too small for two MS-SSIM scales get ``DEFAULT_LOWPASS``."""
    import torch
    import torch.nn.functional as F

    from imgcomp.metrics import (
        MsSsimReference, combine_scale_factors, ms_ssim_db, ms_ssim_halve, ms_ssim_scale_factors, ms_ssim_scales,
    )
    from imgcomp.tensors import image_to_tensor

    height, width = original.shape[:2]
    if ms_ssim_scales(height, width) < 2:
        return DEFAULT_LOWPASS, fit_offsets(original, decoded, DEFAULT_LOWPASS)
    top, left, rows, cols = _search_window(height, width)
    scales = ms_ssim_scales(rows, cols)
    x = image_to_tensor(original[top : top + rows, left : left + cols])
    x_hat = image_to_tensor(decoded[top : top + rows, left : left + cols])
    with torch.no_grad():
        full_size = ms_ssim_scale_factors(x, x_hat, 0, scales, until=1)
        reference, x_hat_half = MsSsimReference(ms_ssim_halve(x), 1, scales), ms_ssim_halve(x_hat)

        def score(corrected_half: torch.Tensor, section_bits: float) -> float:
            value = float(combine_scale_factors(full_size + reference.factors(corrected_half)).mean())
            return ms_ssim_db(value) - tradeoff * math.log((latent_bits + section_bits) / (height * width))

        best = (score(x_hat_half, NO_SECTION_BITS), None, None)
        for block, means in _block_means_every_size(original, decoded).items():
            window = (slice(None), slice(top // block, -(-(top + rows) // block)), slice(left // block, -(-(left + cols) // block)))
            for step in SEARCH_STEPS:
                settings = LowpassSettings(block, step)
                offsets = quantize_means(means, settings)
                grid = torch.from_numpy(offsets[window].astype(np.float32) * step)[None]
                size = (grid.shape[-2] * block // 2, grid.shape[-1] * block // 2)
                up = F.interpolate(grid, size=size, mode="bicubic", align_corners=False)
                corrected = (x_hat_half + up[..., : x_hat_half.shape[-2], : x_hat_half.shape[-1]]).clamp(0.0, 255.0)
                value = score(corrected, offset_bits(offsets, settings))
                if value > best[0]:
                    best = (value, settings, offsets)
    return best[1], best[2]


def correct_tensor(x: torch.Tensor, x_hat: torch.Tensor, settings: LowpassSettings) -> torch.Tensor:
    """Differentiable counterpart of :func:`fit_offsets` + :func:`apply_offsets` on (N, 3, H, W)
    tensors: ``x_hat`` plus the upsampled, quantized block means of ``x - x_hat`` (rounding passes
    the gradient straight through; edge blocks average the pixels they cover), so training and
    encoder-side refinement see what the decoder shows once the layer is added."""
    import torch
    import torch.nn.functional as F

    B = settings.block
    height, width = x.shape[-2:]
    bh, bw = _block_grid(height, width, B)
    pad = (0, bw * B - width, 0, bh * B - height)
    sums = F.avg_pool2d(F.pad(x - x_hat, pad), B, divisor_override=1)
    counts = F.avg_pool2d(F.pad(torch.ones_like(x[:1, :1]), pad), B, divisor_override=1)
    steps = sums / counts / settings.step
    steps = steps + (torch.round(steps) - steps).detach()
    up = F.interpolate(steps * settings.step, size=(bh * B, bw * B), mode="bicubic", align_corners=False)
    return x_hat + up[..., :height, :width]


def _residuals(offsets: np.ndarray) -> np.ndarray:
    """Left-neighbour prediction residuals (the first column predicted from above)."""
    residuals = offsets.copy()
    residuals[:, :, 1:] = offsets[:, :, 1:] - offsets[:, :, :-1]
    residuals[:, 1:, 0] = offsets[:, 1:, 0] - offsets[:, :-1, 0]
    return residuals


def _from_residuals(residuals: np.ndarray) -> np.ndarray:
    offsets = residuals.copy()
    offsets[:, :, 0] = np.cumsum(residuals[:, :, 0], axis=1)
    return np.cumsum(offsets, axis=2)


def _laplace_rows(scale_code: int, radius: int, count: int) -> np.ndarray:
    """``count`` identical rows of a discretised Laplace(0, scale_code / SCALE_UNIT) on [-radius, radius]."""
    k = np.abs(np.arange(-radius, radius + 1, dtype=np.float64))
    row = np.exp(-k * (SCALE_UNIT / scale_code))
    row /= row.sum()
    return np.tile(row, (count, 1))


@functools.lru_cache(maxsize=64)
def exact_laplace_probabilities(scale_code: int, radius: int) -> np.ndarray:
    """Version 2's row of the discretised Laplace(0, scale_code / SCALE_UNIT) on [-radius, radius]:
    integer frequencies ``f`` (every one >= 1, sum ``2**EXACT_FREQUENCY_BITS``) as the exact float64
    values ``f / 2**EXACT_FREQUENCY_BITS`` (read-only).

    ``e[k] = round(2**20 exp(-k SCALE_UNIT / scale_code))`` by Python's ``decimal`` (its
    arithmetic is exactly specified and its ``exp`` correctly rounded: no libm, no SIMD);
    ``f = 1 + e (T - L) // sum(e)`` in integers, the remainder to the centre. So the range coder
    gets bit-identical rows on every machine."""
    if not (1 <= scale_code <= 255 and 0 <= radius):
        raise ImgcompError(f"low-pass Laplace row out of range: scale {scale_code}, radius {radius}")
    context = decimal.Context(prec=40, rounding=decimal.ROUND_HALF_EVEN)
    one = decimal.Decimal(1 << EXACT_TABLE_BITS)
    e = []
    for k in range(radius + 1):
        exponent = context.divide(decimal.Decimal(-k * SCALE_UNIT), decimal.Decimal(scale_code))
        e.append(int(context.multiply(one, context.exp(exponent)).to_integral_value(rounding=decimal.ROUND_HALF_EVEN)))
    weights = np.array(e[:0:-1] + e, np.int64)  # -radius..radius
    total, size = 1 << EXACT_FREQUENCY_BITS, 2 * radius + 1
    if size >= total:
        raise ImgcompError("low-pass alphabet larger than the frequency total")
    freqs = 1 + weights * (total - size) // int(weights.sum())
    freqs[radius] += total - int(freqs.sum())
    row = freqs.astype(np.float64) * 2.0**-EXACT_FREQUENCY_BITS
    row.flags.writeable = False
    return row


def _rows(scale_code: int, radius: int, count: int, version: int) -> np.ndarray:
    if version == 1:
        return _laplace_rows(scale_code, radius, count)
    if version == 2:
        return np.tile(exact_laplace_probabilities(scale_code, radius), (count, 1))
    raise ImgcompError(f"unknown low-pass coding version {version}")


def _header_bits() -> float:
    """The section's first symbols: block size code, then the step."""
    return NO_SECTION_BITS + float(np.log2(MAX_STEP))


def _scale_code(values: np.ndarray) -> int:
    """One channel's Laplace scale in quarters, fitted to its prediction residuals."""
    return int(np.clip(np.rint(np.abs(values).mean() * SCALE_UNIT), 1, 255))


def offset_bits(offsets: np.ndarray, settings: LowpassSettings) -> float:
    """Ideal cost in bits of the section :func:`encode_offsets` writes for ``offsets``, without
    coding it (the discretised Laplace's -log2 probabilities in closed form)."""
    bits = _header_bits()
    radius = 2 * settings.limit
    k = np.arange(radius + 1, dtype=np.float64)
    for channel in _residuals(offsets):
        values = np.abs(channel.flatten())
        rate = SCALE_UNIT / _scale_code(values)
        log_norm = np.log2(np.exp(-k * rate).sum() * 2 - 1)  # sum over -radius..radius
        bits += float(np.log2(255)) + float((values * rate / np.log(2)).sum()) + len(values) * float(log_norm)
    return bits


def encode_offsets(
    encoder: SymbolEncoder, offsets: np.ndarray | None, settings: LowpassSettings | None, version: int = 1
) -> float:
    """Push the correction section (or its absence) and return its ideal cost in bits.
    ``version``: the coding of the Laplace rows (module doc; 2 is exact on every machine)."""
    if version not in CODING_VERSIONS:
        raise ImgcompError(f"unknown low-pass coding version {version}")
    if offsets is None or settings is None:
        encoder.push(np.array([0]), uniform_probabilities(len(BLOCK_SIZES) + 1))
        return NO_SECTION_BITS
    encoder.push(np.array([BLOCK_SIZES.index(settings.block) + 1]), uniform_probabilities(len(BLOCK_SIZES) + 1))
    encoder.push(np.array([settings.step - 1]), uniform_probabilities(MAX_STEP))
    bits = _header_bits()
    residuals = _residuals(offsets)
    radius = 2 * settings.limit
    for channel in residuals:
        values = channel.flatten()
        scale_code = _scale_code(values)
        encoder.push(np.array([scale_code - 1]), uniform_probabilities(255))
        bits += float(np.log2(255))
        for start in range(0, len(values), CHUNK):
            chunk = values[start : start + CHUNK] + radius
            rows = _rows(scale_code, radius, len(chunk), version)
            encoder.push(chunk, rows)
            bits += ideal_bits(rows, chunk)
    return bits


def decode_offsets(
    decoder: SymbolDecoder, height: int, width: int, version: int = 1
) -> tuple[np.ndarray | None, LowpassSettings | None]:
    """Pull the correction section for an image of ``height`` x ``width`` pixels (coded in ``version``)."""
    if version not in CODING_VERSIONS:
        raise ImgcompError(f"unknown low-pass coding version {version}")
    code = int(decoder.pull(uniform_probabilities(len(BLOCK_SIZES) + 1))[0])
    if code == 0:
        return None, None
    settings = LowpassSettings(BLOCK_SIZES[code - 1], int(decoder.pull(uniform_probabilities(MAX_STEP))[0]) + 1)
    bh, bw = _block_grid(height, width, settings.block)
    radius = 2 * settings.limit
    channels = []
    for _ in range(3):
        scale_code = int(decoder.pull(uniform_probabilities(255))[0]) + 1
        values = [
            decoder.pull(_rows(scale_code, radius, min(CHUNK, bh * bw - start), version)) - radius
            for start in range(0, bh * bw, CHUNK)
        ]
        channels.append(np.concatenate(values).reshape(bh, bw))
    offsets = _from_residuals(np.stack(channels))
    if np.abs(offsets).max() > settings.limit:
        raise ImgcompError("corrupt payload: low-pass offsets out of range")
    return offsets, settings


def correct(original: np.ndarray, decoded: np.ndarray, settings: LowpassSettings, version: int = 2) -> tuple[np.ndarray, float]:
    """What a decoder shows with the layer at fixed ``settings``: the corrected (H, W, 3) uint8
    image and the layer's cost in bits, exactly as the encoder codes it (training validates with it)."""
    from imgcomp.entropy import SymbolEncoder

    offsets = fit_offsets(original, decoded, settings)
    bits = encode_offsets(SymbolEncoder(), offsets, settings, version)
    return apply_offsets(decoded, offsets, settings), bits
