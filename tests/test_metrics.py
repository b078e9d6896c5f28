"""imgcomp.metrics: PSNR, MS-SSIM (RGB and YCbCr-weighted), bits per pixel."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from skimage import data as skimage_data

from imgcomp.errors import ImgcompError
from imgcomp.metrics import (
    MIN_SIDE_5_SCALES,
    bits_per_pixel,
    ms_ssim,
    ms_ssim_db,
    ms_ssim_scales,
    ms_ssim_tensor,
    ms_ssim_ycbcr,
    mse,
    psnr,
)


# Two SSIM implementations agree only up to rounding: they sum the same products in another order
# (conv2d vs band matrices, tiles, cached x-side maps), and which order a CPU's BLAS/conv kernel
# takes differs between machines. So the equivalence tests run in float64 with a bound from the
# arithmetic, not from one machine's output: each filtered map is a sum of 2 x 11 taps of values
# up to 255^2, so it is off by at most ~22 u 255^2 (u = 2^-53 in float64); sigma^2 = E[x^2] - mu^2
# adds a few such errors, and a factor (2 sigma_xy + C2) / (sigma_x^2 + sigma_y^2 + C2) with
# C2 = (0.03 * 255)^2 moves by at most ~6 * 4 * 22 u 255^2 / C2 ~ 7e-11. A float32 run has the
# same bound with u = 2^-24, ~0.04: too loose to test anything, hence float64.
SAME_SUMS_ATOL = 6 * 4 * 22 * 2.0**-53 * 255**2 / (0.03 * 255) ** 2 * 10  # x10 margin: ~7e-10


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """These small convolutions run fastest on one thread (and slowest on a busy machine's two)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A natural 256x256 RGB photo (part of scikit-image's astronaut)."""
    return np.ascontiguousarray(skimage_data.astronaut()[100:356, 128:384])


def noisy(image: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, sigma, image.shape)
    return np.clip(image + noise, 0, 255).round().astype(np.uint8)


def test_identical_images(photo: np.ndarray) -> None:
    assert psnr(photo, photo) == math.inf
    assert ms_ssim(photo, photo) == pytest.approx(1.0, abs=1e-6)
    assert ms_ssim_db(1.0) == math.inf


def test_known_mse_gives_known_psnr() -> None:
    a = np.full((20, 30, 3), 100, np.uint8)
    b = a + 5
    assert mse(a, b) == pytest.approx(25.0)
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 25))
    assert psnr(a, b) == pytest.approx(34.151, abs=1e-3)


def test_ms_ssim_decreases_with_noise(photo: np.ndarray) -> None:
    values = [ms_ssim(photo, noisy(photo, sigma)) for sigma in (2, 8, 25)]
    assert 1.0 > values[0] > values[1] > values[2] > 0.3
    assert ms_ssim_db(values[0]) > ms_ssim_db(values[2])


def test_ycbcr_ms_ssim(photo: np.ndarray) -> None:
    assert ms_ssim_ycbcr(photo, photo) == pytest.approx(1.0, abs=1e-6)
    light, heavy = ms_ssim_ycbcr(photo, noisy(photo, 5)), ms_ssim_ycbcr(photo, noisy(photo, 25))
    assert 1.0 > light > heavy > 0.0


def test_accepts_nchw_tensors(photo: np.ndarray) -> None:
    tensor = torch.from_numpy(photo).permute(2, 0, 1)[None].float()
    assert psnr(tensor, tensor + 5) == pytest.approx(10 * math.log10(255**2 / 25))
    assert ms_ssim(tensor, tensor) == pytest.approx(1.0, abs=1e-6)


def test_too_small_for_five_scales_is_an_error() -> None:
    assert MIN_SIDE_5_SCALES == 161
    small = np.zeros((160, 200, 3), np.uint8)
    with pytest.raises(ImgcompError, match="161x161"):
        ms_ssim(small, small)
    with pytest.raises(ImgcompError):
        ms_ssim_ycbcr(small, small)


def test_fewer_scales_fallback_on_96x96(photo: np.ndarray) -> None:
    crop = np.ascontiguousarray(photo[:96, :96])
    assert ms_ssim_scales(96, 96) == 4
    assert ms_ssim(crop, crop, allow_fewer_scales=True) == pytest.approx(1.0, abs=1e-6)
    light = ms_ssim(crop, noisy(crop, 5), allow_fewer_scales=True)
    heavy = ms_ssim(crop, noisy(crop, 25), allow_fewer_scales=True)
    assert 1.0 > light > heavy > 0.0
    assert ms_ssim_ycbcr(crop, noisy(crop, 5), allow_fewer_scales=True) < 1.0


def test_fallback_is_differentiable_and_batched() -> None:
    x = torch.rand(2, 3, 64, 64) * 255
    y = (x + torch.randn_like(x) * 10).clamp(0, 255).requires_grad_(True)
    values = ms_ssim_tensor(x, y, allow_fewer_scales=True)
    assert values.shape == (2,)
    values.sum().backward()
    assert y.grad is not None and torch.isfinite(y.grad).all()


def test_far_too_small_even_for_fallback() -> None:
    tiny = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(ImgcompError, match="too small"):
        ms_ssim(tiny, tiny, allow_fewer_scales=True)


def test_shape_mismatch_is_an_error(photo: np.ndarray) -> None:
    with pytest.raises(ImgcompError, match="differ in shape"):
        psnr(photo, photo[:-1])
    with pytest.raises(ImgcompError, match="differ in shape"):
        ms_ssim(photo, photo[:, :-1])


def test_bits_per_pixel() -> None:
    assert bits_per_pixel(1000, 100, 80) == pytest.approx(1.0)
    assert bits_per_pixel(49152, 512, 768) == pytest.approx(1.0)
    with pytest.raises(ImgcompError):
        bits_per_pixel(10, 0, 5)


def test_matmul_ssim_equals_pytorch_msssim() -> None:
    """The fast training path computes exactly what pytorch_msssim's _ssim computes."""
    import torch
    from pytorch_msssim.ssim import _fspecial_gauss_1d, _ssim

    from imgcomp.metrics import _ssim_by_matmul

    torch.manual_seed(0)
    x = torch.rand(2, 3, 40, 52, dtype=torch.float64) * 255
    y = (x + torch.randn_like(x) * 20).clamp(0, 255)
    window = _fspecial_gauss_1d(11, 1.5).double()
    expected = _ssim(x, y, 255, window.repeat(3, 1, 1, 1), size_average=False)
    got = _ssim_by_matmul(x, y, window.flatten(), 255)
    for a, b in zip(expected, got):
        assert torch.allclose(a, b, rtol=0, atol=SAME_SUMS_ATOL)


def test_tiled_filtering_and_scale_factors_equal_pytorch_msssim() -> None:
    """Sides over ``TILED_ABOVE`` are filtered in tiles (including a short last tile); the
    per-scale factors recombine to pytorch_msssim's five-scale value, and ``until`` stops early."""
    from pytorch_msssim import ms_ssim as reference
    from pytorch_msssim.ssim import _fspecial_gauss_1d, _ssim

    from imgcomp.metrics import (
        MS_SSIM_WEIGHTS,
        TILED_ABOVE,
        _ssim_by_matmul,
        combine_scale_factors,
        ms_ssim_halve,
        ms_ssim_scale_factors,
    )

    torch.manual_seed(1)
    # 171 - 10 = 161 rows: 5 tiles of 32 + 1
    x = torch.rand(1, 3, 171, TILED_ABOVE + 75, dtype=torch.float64) * 255
    y = (x + torch.randn_like(x) * 25).clamp(0, 255)
    window = _fspecial_gauss_1d(11, 1.5).double()
    for a, b in zip(_ssim(x, y, 255, window.repeat(3, 1, 1, 1), size_average=False), _ssim_by_matmul(x, y, window.flatten(), 255)):
        assert torch.allclose(a, b, rtol=0, atol=SAME_SUMS_ATOL)
    factors = ms_ssim_scale_factors(x, y, 0, 5)
    assert len(factors) == 5 and all(f.shape == (1, 3) for f in factors)
    expected = float(reference(x, y, data_range=255))
    # combine_scale_factors renormalises the published weights, which sum to 1.0001, not 1
    undone = combine_scale_factors(factors) ** sum(MS_SSIM_WEIGHTS)
    assert float(undone.mean()) == pytest.approx(expected, rel=0, abs=SAME_SUMS_ATOL)
    assert ms_ssim_scales(171, 171) == 5  # what pytorch_msssim needs for five
    first = ms_ssim_scale_factors(x, y, 0, 5, until=1)
    rest = ms_ssim_scale_factors(ms_ssim_halve(x), ms_ssim_halve(y), 1, 5)
    assert len(first) == 1 and all(torch.equal(a, b) for a, b in zip(first + rest, factors))
    from imgcomp.metrics import MsSsimReference

    reference = MsSsimReference(ms_ssim_halve(x), 1, 5)
    got = reference.factors(ms_ssim_halve(y))
    assert all(torch.allclose(a, b, rtol=0, atol=SAME_SUMS_ATOL) for a, b in zip(got, rest))
