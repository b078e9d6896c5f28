"""BD-rate against JPEG on the validation images during training (imgcomp.training.validation)."""

from __future__ import annotations

import numpy as np
import pytest

from imgcomp.training.validation import RatePoint, anchor_points, bd_rates_vs_jpeg, jpeg_points


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:96, 0:128]
    smooth = np.stack([x * 2, y * 2, (x + y)], axis=-1).astype(np.float64)
    return [np.clip(smooth + rng.normal(0, s, smooth.shape), 0, 255).astype(np.uint8) for s in (4.0, 12.0)]


def test_jpeg_itself_scores_zero_and_half_the_bits_minus_fifty(images) -> None:
    anchors = anchor_points(images)
    assert [len(a) for a in anchors] == [len(jpeg_points(images[0]))] * 2
    assert all(np.diff([p.bpp for p in a]).min() > 0 for a in anchors)
    same = bd_rates_vs_jpeg(images, anchors)
    assert same["val_bd_ms_ssim_vs_jpeg420"] == pytest.approx(0.0, abs=1e-6)
    assert same["val_bd_psnr_vs_jpeg420"] == pytest.approx(0.0, abs=1e-6)
    assert same["val_bd_psnr_images"] == 2.0
    halved = [[RatePoint(p.bpp / 2, p.ms_ssim, p.psnr) for p in a] for a in anchors]
    half = bd_rates_vs_jpeg(images, halved)
    assert half["val_bd_ms_ssim_vs_jpeg420"] == pytest.approx(-50.0, abs=0.5)
    assert half["val_bd_psnr_vs_jpeg420"] == pytest.approx(-50.0, abs=0.5)
    worse = [[RatePoint(p.bpp, p.ms_ssim, p.psnr - 30) for p in a] for a in anchors]  # no overlap with JPEG
    none = bd_rates_vs_jpeg(images, worse)
    assert "val_bd_psnr_vs_jpeg420" not in none and none["val_bd_psnr_images"] == 0.0
    with pytest.raises(ValueError):
        bd_rates_vs_jpeg(images, anchors[:1])
