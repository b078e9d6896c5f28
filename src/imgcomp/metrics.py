"""Image quality and rate metrics, computed the way the papers report them.

* PSNR on 8-bit RGB (peak 255), over all pixels and channels.
* MS-SSIM (Wang et al. 2003) on RGB with the standard five scales and weights, via
  ``pytorch_msssim``; ``ms_ssim_db`` is the papers' ``-10 log10(1 - MS-SSIM)``.
* YCbCr-weighted MS-SSIM as in Rippel & Bourdev (2017, sec. 5): MS-SSIM of Y, Cb and Cr (BT.601,
  full range) combined with weights 6/8, 1/8, 1/8.
* Bits per pixel: ``8 * bytes / (H * W)``.

MS-SSIM's five scales need a side of at least 161 pixels (an 11-tap window at 1/16 scale).
Smaller images raise :class:`ImgcompError` unless ``allow_fewer_scales=True``: then the number of
scales is reduced to what fits and the remaining weights are renormalised to sum to one (the
documented fallback used for small training crops; values are not comparable to 5-scale figures).
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from pytorch_msssim import ms_ssim as _ms_ssim_5
from pytorch_msssim.ssim import _fspecial_gauss_1d

from imgcomp.errors import ImgcompError
from imgcomp.tensors import as_image_tensor, check_image_pair

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
WINDOW_SIZE = 11
YCBCR_WEIGHTS = (6 / 8, 1 / 8, 1 / 8)
MIN_SIDE_5_SCALES = (WINDOW_SIZE - 1) * 2**4 + 1


_as_tensor = as_image_tensor
_check_pair = check_image_pair


def mse(a, b) -> float:
    """Mean squared error over all pixels and channels (0-255 scale)."""
    x, y = _as_tensor(a).double(), _as_tensor(b).double()
    _check_pair(x, y)
    return float(torch.mean((x - y) ** 2))


def psnr(a, b, peak: float = 255.0) -> float:
    """PSNR in dB; ``inf`` for identical images."""
    error = mse(a, b)
    return math.inf if error == 0 else 10.0 * math.log10(peak**2 / error)


def ms_ssim_scales(height: int, width: int) -> int:
    """How many MS-SSIM scales fit an image of this size (at most 5, at least 1)."""
    side = min(height, width)
    if side < WINDOW_SIZE:
        return 0
    if side >= MIN_SIDE_5_SCALES:  # what pytorch_msssim needs for its five
        return 5
    return min(5, 1 + int(math.floor(math.log2(side / WINDOW_SIZE))))


def ms_ssim_tensor(
    x: torch.Tensor, y: torch.Tensor, data_range: float = 255.0, allow_fewer_scales: bool = False
) -> torch.Tensor:
    """Differentiable MS-SSIM per batch element for NCHW tensors in ``[0, data_range]``."""
    _check_pair(x, y)
    height, width = x.shape[-2:]
    if min(height, width) >= MIN_SIDE_5_SCALES:
        return _ms_ssim_5(x, y, data_range=data_range, size_average=False)
    scales = ms_ssim_scales(height, width)
    if not allow_fewer_scales or scales < 2:
        raise ImgcompError(
            f"MS-SSIM needs images of at least {MIN_SIDE_5_SCALES}x{MIN_SIDE_5_SCALES} pixels "
            f"for its 5 scales, got {width}x{height}"
            + ("" if scales >= 2 else "; too small even for the reduced-scale fallback")
        )
    return combine_scale_factors(ms_ssim_scale_factors(x, y, 0, scales, data_range)).mean(1)


def ms_ssim_halve(x: torch.Tensor) -> torch.Tensor:
    """MS-SSIM's step to the next scale: 2x2 average pooling (an odd side is padded)."""
    return F.avg_pool2d(x, kernel_size=2, padding=[s % 2 for s in x.shape[2:]])


def ms_ssim_scale_factors(
    x: torch.Tensor, y: torch.Tensor, first: int, scales: int, data_range: float = 255.0,
    until: int | None = None,
) -> list[torch.Tensor]:
    """MS-SSIM's per-scale factors (N, C) at scales ``first .. until - 1`` (0 = full size;
    ``until`` defaults to ``scales``) of an MS-SSIM over ``scales`` scales, for ``x`` and ``y``
    already at scale ``first``: the clipped contrast-structure term at every scale but the last
    of the ``scales``, the clipped SSIM there (Wang et al. 2003, eq. 7 before the exponents)."""
    window = _fspecial_gauss_1d(WINDOW_SIZE, 1.5).flatten().to(x.dtype)
    factors = []
    for level in range(first, scales if until is None else until):
        ssim_per_channel, cs = _ssim_by_matmul(x, y, window, data_range)
        if level == scales - 1:
            factors.append(torch.relu(ssim_per_channel))
            break
        factors.append(torch.relu(cs))
        x, y = ms_ssim_halve(x), ms_ssim_halve(y)
    return factors


class MsSsimReference:
    """One image ``x``'s side of MS-SSIM, pooled and filtered once at scales ``first ..
    scales - 1``, for scoring many candidates ``y`` against it (:meth:`factors` gives what
    :func:`ms_ssim_scale_factors` gives, for 3 filtered maps per scale instead of 5)."""

    def __init__(self, x: torch.Tensor, first: int, scales: int, data_range: float = 255.0) -> None:
        self.first, self.scales, self.data_range = first, scales, data_range
        self.window = _fspecial_gauss_1d(WINDOW_SIZE, 1.5).flatten().to(x.dtype)
        taps = tuple(self.window.tolist())
        self.levels = []
        for level in range(first, scales):
            mu_x, xx = _filter_valid(torch.stack([x, x * x]), taps)
            self.levels.append((x, (mu_x, xx)))
            if level < scales - 1:
                x = ms_ssim_halve(x)

    def factors(self, y: torch.Tensor) -> list[torch.Tensor]:
        """The per-scale factors (N, C) of ``y`` (at scale ``first``) against ``x``."""
        factors = []
        for level, (x, x_filtered) in enumerate(self.levels, start=self.first):
            ssim_per_channel, cs = _ssim_by_matmul(x, y, self.window, self.data_range, x_filtered)
            if level == self.scales - 1:
                factors.append(torch.relu(ssim_per_channel))
            else:
                factors.append(torch.relu(cs))
                y = ms_ssim_halve(y)
        return factors


def combine_scale_factors(factors: list[torch.Tensor]) -> torch.Tensor:
    """MS-SSIM per batch element and channel (N, C) from all its scales' factors: the product of
    factor ** weight, with the standard weights renormalised when there are fewer than five scales."""
    stacked = torch.stack(factors, dim=0)
    weights = stacked.new_tensor(MS_SSIM_WEIGHTS[: len(factors)])
    weights = weights / weights.sum()
    return torch.prod(stacked ** weights.view(-1, 1, 1), dim=0)


@lru_cache(maxsize=32)
def _valid_filter_matrix(size: int, window: tuple[float, ...]) -> torch.Tensor:
    """(size - k + 1, size) band matrix: a 'valid' 1-D convolution as a matrix product."""
    k = len(window)
    taps = torch.tensor(window)
    return torch.stack([F.pad(taps, (i, size - k - i)) for i in range(size - k + 1)])


FILTER_TILE = 32  # output rows/columns per band-matrix product on sides above TILED_ABOVE
TILED_ABOVE = 128


def _filter_valid(maps: torch.Tensor, taps: tuple[float, ...]) -> torch.Tensor:
    """'Valid' separable filtering of the last two dimensions by ``taps``. Sides up to
    ``TILED_ABOVE`` take one band-matrix product (as the cpu preset's training crops do); longer sides go
    in tiles of ``FILTER_TILE`` outputs, so the cost grows with the side, not its square."""
    k = len(taps)
    height, width = maps.shape[-2:]
    if height <= TILED_ABOVE:
        maps = _valid_filter_matrix(height, taps).to(maps.dtype) @ maps
    else:
        band = _valid_filter_matrix(FILTER_TILE + k - 1, taps).to(maps.dtype)
        maps = torch.cat([
            band[:n, : n + k - 1] @ maps[..., top : top + n + k - 1, :]
            for top in range(0, height - k + 1, FILTER_TILE)
            for n in [min(FILTER_TILE, height - k + 1 - top)]
        ], dim=-2)
    if width <= TILED_ABOVE:
        return maps @ _valid_filter_matrix(width, taps).to(maps.dtype).T
    band = _valid_filter_matrix(FILTER_TILE + k - 1, taps).to(maps.dtype)
    return torch.cat([
        maps[..., left : left + n + k - 1] @ band[:n, : n + k - 1].T
        for left in range(0, width - k + 1, FILTER_TILE)
        for n in [min(FILTER_TILE, width - k + 1 - left)]
    ], dim=-1)


def _ssim_by_matmul(
    x: torch.Tensor, y: torch.Tensor, window: torch.Tensor, data_range: float,
    x_filtered: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """pytorch_msssim's ``_ssim`` (same constants, 'valid' Gaussian filtering), with the
    separable filter done as matrix products: many times faster on CPU than depthwise
    convolutions. ``x_filtered``: ``x`` and ``x * x`` already filtered, when many ``y`` are
    scored against one ``x``."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    taps = tuple(window.tolist())
    if x_filtered is None:
        mu_x, mu_y, xx, yy, xy = _filter_valid(torch.stack([x, y, x * x, y * y, x * y]), taps)
    else:
        (mu_x, xx), (mu_y, yy, xy) = x_filtered, _filter_valid(torch.stack([y, y * y, x * y]), taps)
    sigma_x, sigma_y, sigma_xy = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
    cs_map = (2 * sigma_xy + c2) / (sigma_x + sigma_y + c2)
    ssim_map = ((2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)) * cs_map
    return ssim_map.flatten(2).mean(-1), cs_map.flatten(2).mean(-1)


def ms_ssim(a, b, allow_fewer_scales: bool = False) -> float:
    """MS-SSIM of two RGB images (arrays ``(H, W, 3)`` or NCHW tensors on the 0-255 scale)."""
    x, y = _as_tensor(a), _as_tensor(b)
    with torch.no_grad():
        return float(ms_ssim_tensor(x, y, 255.0, allow_fewer_scales).mean())


def rgb_to_ycbcr(x: torch.Tensor) -> torch.Tensor:
    """BT.601 full-range RGB -> YCbCr for NCHW tensors on the 0-255 scale (as JPEG/JFIF)."""
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = 128.0 - 0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 128.0 + 0.5 * r - 0.418688 * g - 0.081312 * b
    return torch.stack([y, cb, cr], dim=1)


def ms_ssim_ycbcr(a, b, allow_fewer_scales: bool = False) -> float:
    """Rippel & Bourdev's YCbCr MS-SSIM: 6/8 * MS-SSIM(Y) + 1/8 * (Cb) + 1/8 * (Cr)."""
    x, y = rgb_to_ycbcr(_as_tensor(a)), rgb_to_ycbcr(_as_tensor(b))
    total = 0.0
    with torch.no_grad():
        for channel, weight in enumerate(YCBCR_WEIGHTS):
            value = ms_ssim_tensor(
                x[:, channel : channel + 1], y[:, channel : channel + 1], 255.0, allow_fewer_scales
            )
            total += weight * float(value.mean())
    return total


def ms_ssim_db(value: float) -> float:
    """MS-SSIM on the papers' decibel scale, ``-10 log10(1 - MS-SSIM)``; ``inf`` at 1."""
    return math.inf if value >= 1.0 else -10.0 * math.log10(1.0 - value)


def bits_per_pixel(num_bytes: int, height: int, width: int) -> float:
    """Rate of a file of ``num_bytes`` for an ``height`` x ``width`` image."""
    if height <= 0 or width <= 0:
        raise ImgcompError(f"invalid image size {width}x{height}")
    return 8.0 * num_bytes / (height * width)


# LPIPS / ST-LPIPS (learned perceptual distance) lives in its own module; see imgcomp.lpips.
from imgcomp.lpips import LPIPS, lpips, lpips_network  # noqa: E402,F401
