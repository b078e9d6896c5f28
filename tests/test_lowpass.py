"""The low-pass correction layer: fitting, applying and range-coding block offsets."""

from __future__ import annotations

import numpy as np
import pytest

from imgcomp.entropy import SymbolDecoder, SymbolEncoder
from imgcomp.errors import ImgcompError
from imgcomp.postfilter.lowpass import (
    LowpassSettings,
    apply_offsets,
    decode_offsets,
    encode_offsets,
    fit_offsets,
    offset_bits,
)


def textured(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(60, 190, (height, width, 3)).astype(np.uint8)


def test_a_constant_colour_cast_is_removed_exactly() -> None:
    original = textured(70, 100)
    cast = np.array([12, -20, 32])
    decoded = (original.astype(int) - cast).astype(np.uint8)
    settings = LowpassSettings(32, 4)
    offsets = fit_offsets(original, decoded, settings)
    assert offsets.shape == (3, 3, 4)  # ceil(70 / 32) x ceil(100 / 32) blocks per channel
    assert np.array_equal(offsets * settings.step, np.broadcast_to(cast[:, None, None], offsets.shape))
    assert np.array_equal(apply_offsets(decoded, offsets, settings), original)


def test_edge_blocks_average_only_the_pixels_they_cover() -> None:
    original = np.full((40, 70, 3), 100, np.uint8)
    decoded = original.copy()
    decoded[:, 64:] = 60  # the last 6 columns: a partial block of 32 x 6 (and 8 x 6) pixels
    offsets = fit_offsets(original, decoded, LowpassSettings(32, 1))
    assert offsets[:, :, 2].tolist() == [[40, 40]] * 3
    assert not offsets[:, :, :2].any()


def test_offsets_reduce_a_smooth_colour_drift() -> None:
    original = textured(96, 128, seed=1)
    yy, xx = np.mgrid[0:96, 0:128]
    drift = np.stack([xx / 4.0, -yy / 3.0, np.zeros_like(xx, dtype=float)], -1)
    decoded = np.clip(original + drift, 0, 255).astype(np.uint8)
    settings = LowpassSettings(16, 2)
    corrected = apply_offsets(decoded, fit_offsets(original, decoded, settings), settings)
    before = np.abs(decoded.astype(int) - original).mean()
    after = np.abs(corrected.astype(int) - original).mean()
    assert after < 0.2 * before


@pytest.mark.parametrize(
    "settings, height, width",
    [(LowpassSettings(16, 1), 100, 150), (LowpassSettings(32, 4), 100, 150), (LowpassSettings(64, 16), 100, 150),
     (LowpassSettings(16, 8), 1100, 1000)],  # the last: 4,347 offsets per channel, more than one CHUNK
)
def test_offsets_round_trip_through_the_range_coder(settings: LowpassSettings, height: int, width: int) -> None:
    rng = np.random.default_rng(3)
    bh, bw = -(-height // settings.block), -(-width // settings.block)
    offsets = rng.integers(-3, 4, (3, bh, bw))
    offsets[0, 0, 0], offsets[2, -1, -1] = settings.limit, -settings.limit  # the extremes
    encoder = SymbolEncoder()
    encoder.push(np.array([1]), np.full((1, 2), 0.5))  # something before, as the latent is
    bits = encode_offsets(encoder, offsets, settings)
    payload = encoder.finish()
    assert 8 * len(payload) <= bits + 64
    decoder = SymbolDecoder(payload)
    decoder.pull(np.full((1, 2), 0.5))
    decoded, decoded_settings = decode_offsets(decoder, height, width)
    assert decoded_settings == settings
    assert np.array_equal(decoded, offsets)


def test_no_correction_is_one_symbol() -> None:
    encoder = SymbolEncoder()
    assert encode_offsets(encoder, None, None) == 2.0
    assert decode_offsets(SymbolDecoder(encoder.finish()), 8, 8) == (None, None)


@pytest.mark.parametrize("block, step", [(24, 4), (32, 0), (32, 17)])
def test_bad_settings_are_refused(block: int, step: int) -> None:
    with pytest.raises(ImgcompError, match="low-pass"):
        LowpassSettings(block, step)


def test_training_correction_matches_the_codec_and_ignores_block_means() -> None:
    """``correct_tensor`` gives what the codec's fit + apply give on whole blocks (up to rounding
    of pixel values), and the distortion has no gradient along a brightness shift of ``x_hat``
    (the layer sends block means, so E and D are not trained for them)."""
    import torch

    from imgcomp.postfilter.lowpass import correct_tensor
    from imgcomp.systems.mentzer2018.objective import distortion

    settings = LowpassSettings(32, 4)
    original = textured(64, 96, seed=4)
    decoded = np.clip(original.astype(int) + np.random.default_rng(5).integers(-40, 40, (2, 3, 1, 1, 3)).repeat(32, 0).repeat(32, 2).reshape(64, 96, 3), 0, 255).astype(np.uint8)
    as_tensor = lambda a: torch.from_numpy(a).permute(2, 0, 1)[None].float()
    codec_output = apply_offsets(decoded, fit_offsets(original, decoded, settings), settings)
    trained = correct_tensor(as_tensor(original), as_tensor(decoded), settings)
    assert np.abs(trained.clamp(0, 255).round()[0].permute(1, 2, 0).numpy() - codec_output).max() <= 1

    x_hat = as_tensor(decoded).requires_grad_(True)
    d, _ = distortion(as_tensor(original), x_hat, 100.0, colour_weight=0.5, lowpass=settings)
    d.backward()
    assert x_hat.grad.abs().sum() > 0
    assert abs(float(x_hat.grad.sum())) < 1e-4 * float(x_hat.grad.abs().sum())


def test_training_correction_matches_the_codec_on_partial_edge_blocks() -> None:
    """Sides that are not multiples of the block: edge blocks average only the pixels they
    cover, as :func:`fit_offsets` does."""
    import torch

    from imgcomp.postfilter.lowpass import correct_tensor

    settings = LowpassSettings(16, 3)
    original = textured(50, 70, seed=6)
    yy, xx = np.mgrid[0:50, 0:70]
    decoded = np.clip(original.astype(int) + (xx // 5 - yy // 4)[..., None] * np.array([1, -2, 3]), 0, 255).astype(np.uint8)
    as_tensor = lambda a: torch.from_numpy(a).permute(2, 0, 1)[None].float()
    codec_output = apply_offsets(decoded, fit_offsets(original, decoded, settings), settings)
    corrected = correct_tensor(as_tensor(original), as_tensor(decoded), settings)
    assert corrected.shape == (1, 3, 50, 70)
    assert np.abs(corrected.clamp(0, 255).round()[0].permute(1, 2, 0).numpy() - codec_output).max() <= 1


def test_training_settings_are_checked() -> None:
    from imgcomp.systems.mentzer2018.training import TrainConfig

    assert TrainConfig(data="d", crop=128, lowpass_block=32).lowpass == LowpassSettings(32, 4)
    assert TrainConfig(data="d").lowpass is None
    with pytest.raises(ImgcompError, match="multiple of lowpass_block"):
        TrainConfig(data="d", crop=144, lowpass_block=32)
    with pytest.raises(ImgcompError, match="low-pass"):
        TrainConfig(data="d", lowpass_block=24)


@pytest.mark.parametrize("settings", [LowpassSettings(16, 2), LowpassSettings(32, 4), LowpassSettings(64, 16)])
def test_offset_bits_is_what_the_coder_counts(settings: LowpassSettings) -> None:
    offsets = np.clip(np.cumsum(np.random.default_rng(3).integers(-3, 4, (3, 9, 14)), axis=2), -settings.limit, settings.limit)
    assert offset_bits(offsets, settings) == pytest.approx(encode_offsets(SymbolEncoder(), offsets, settings), rel=1e-9)


def drifted(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """A textured image and a 'decoded' copy whose colour drifts smoothly across it."""
    original = textured(height, width, seed=4)
    rows, cols = np.mgrid[0:height, 0:width]
    drift = 30 * np.sin(rows / 23.0)[..., None] * np.array([1.0, -0.5, 0.8]) + 15 * np.cos(cols / 31.0)[..., None]
    return original, np.clip(original + drift, 0, 255).astype(np.uint8)


def test_the_search_trades_rate_for_ms_ssim() -> None:
    """``choose_lowpass`` returns one of its candidates with the offsets fit_offsets gives it; a
    free rate buys the most accurate correction, an exorbitant one no section at all, and the
    default picks a section that corrects a strong drift."""
    from imgcomp.postfilter.lowpass import BLOCK_SIZES, SEARCH_STEPS, choose_lowpass
    from imgcomp.metrics import ms_ssim

    original, decoded = drifted(200, 260)
    chosen, offsets = choose_lowpass(original, decoded, latent_bits=20_000)
    assert chosen is not None and chosen.block in BLOCK_SIZES and chosen.step in SEARCH_STEPS
    assert np.array_equal(offsets, fit_offsets(original, decoded, chosen))
    assert ms_ssim(original, apply_offsets(decoded, offsets, chosen)) > ms_ssim(original, decoded) + 0.01

    free, _ = choose_lowpass(original, decoded, latent_bits=20_000, tradeoff=0.0)
    assert (free.block, free.step) == (16, 2)
    assert choose_lowpass(original, decoded, latent_bits=20_000, tradeoff=1e6) == (None, None)


def test_images_too_small_to_search_get_the_default_settings() -> None:
    from imgcomp.postfilter.lowpass import DEFAULT_LOWPASS, choose_lowpass

    original, decoded = drifted(20, 40)  # one MS-SSIM scale only
    chosen, offsets = choose_lowpass(original, decoded, latent_bits=500)
    assert chosen == DEFAULT_LOWPASS and np.array_equal(offsets, fit_offsets(original, decoded, DEFAULT_LOWPASS))


def test_block_means_of_every_size_at_once_are_exact() -> None:
    from imgcomp.postfilter.lowpass import BLOCK_SIZES, _block_means_every_size, block_means

    original, decoded = drifted(83, 150)  # partial blocks of every size at both edges
    every = _block_means_every_size(original, decoded)
    assert sorted(every) == sorted(BLOCK_SIZES)
    for block, means in every.items():
        assert np.array_equal(means, block_means(original, decoded, block))


def test_large_images_are_searched_on_a_central_window(monkeypatch) -> None:
    """Over ``SEARCH_MAX_PIXELS`` the search scores a block-aligned central window (its offsets
    the whole image's); the answer is still a whole-image section."""
    import imgcomp.postfilter.lowpass as lowpass

    assert lowpass._search_window(512, 768) == (0, 0, 512, 768)
    monkeypatch.setattr(lowpass, "SEARCH_MAX_PIXELS", 128 * 128)
    top, left, rows, cols = lowpass._search_window(300, 700)
    assert (rows, cols) == (128, 128) and top % 64 == 0 and left % 64 == 0
    assert top <= (300 - rows) // 2 and left <= (700 - cols) // 2
    assert lowpass._search_window(100, 5000) == (0, 2432, 100, 128)
    original, decoded = drifted(300, 700)
    chosen, offsets = lowpass.choose_lowpass(original, decoded, latent_bits=50_000)
    assert chosen is not None and np.array_equal(offsets, fit_offsets(original, decoded, chosen))
