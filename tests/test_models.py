"""The context-model codec's parts: masks, causality, quantizer, importance map, registry."""

from __future__ import annotations

import itertools

import pytest
import torch

from imgcomp.errors import ImgcompError
from imgcomp.systems import create_model
from imgcomp.systems.mentzer2018.config import preset
from imgcomp.systems.mentzer2018.context_model import ContextModel3D, causal_mask_3d
from imgcomp.systems.mentzer2018.importance_map import binarize_mask, importance_mask
from imgcomp.systems.mentzer2018.quantizer import LearnedCenterQuantizer


def raster_index(c: int, h: int, w: int, H: int, W: int) -> int:
    return (c * H + h) * W + w


@pytest.mark.parametrize("features", [1, 2])
@pytest.mark.parametrize("seed", range(4))
def test_context_model_is_causal(seed: int, features: int) -> None:
    """Changing a symbol (any of its input features) never changes the logits of any symbol at or
    before it in raster order."""
    torch.manual_seed(seed)
    K, H, W = 4, 5, 6
    model = ContextModel3D(num_centers=6, channels=5, in_channels=features)
    for p in model.parameters():  # random weights, not the initialisation's small ones
        torch.nn.init.normal_(p, std=0.5)
    volume = torch.randn(1, features, K, H, W)
    base = model(volume)
    for c, h, w in itertools.product(range(K), range(H), range(W)):
        changed = volume.clone()
        changed[0, :, c, h, w] += 3.0
        diff = (model(changed) - base).abs().amax(dim=1)[0]  # (K, H, W)
        position = raster_index(c, h, w, H, W)
        affected = torch.nonzero(diff > 1e-6)
        for cc, hh, ww in affected.tolist():
            assert raster_index(cc, hh, ww, H, W) > position, (c, h, w, cc, hh, ww)


def test_context_model_sees_its_past() -> None:
    """Causal, but not blind: a symbol's logits do depend on its immediate predecessors."""
    torch.manual_seed(0)
    model = ContextModel3D(num_centers=6, channels=5)
    volume = torch.randn(1, 3, 4, 4)
    base = model(volume)
    for source in [(1, 2, 1), (1, 1, 2), (0, 2, 2)]:  # left, above, previous channel
        changed = volume.clone()
        changed[(0, *source)] += 3.0
        assert (model(changed) - base)[0, :, 1, 2, 2].abs().max() > 0


def test_masks_follow_algorithm_1() -> None:
    strict, with_centre = causal_mask_3d(3, False), causal_mask_3d(3, True)
    assert strict.sum() == 13 and with_centre.sum() == 14
    assert strict[1, 1, 1] == 0 and with_centre[1, 1, 1] == 1
    assert strict[2].sum() == 0  # nothing from the next channel
    assert strict[0].sum() == 9  # the whole previous channel's 3x3 neighbourhood


def test_importance_mask_eq14() -> None:
    y = torch.tensor([0.0, 1.5, 3.0, 4.0]).view(4, 1, 1, 1)
    mask = importance_mask(y, 4)[:, :, 0, 0]
    expected = torch.tensor(
        [[0, 0, 0, 0], [1, 0.5, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.float32
    )
    assert torch.allclose(mask, expected)
    assert torch.equal(binarize_mask(mask), torch.ceil(mask))


def test_binarized_mask_has_identity_gradient() -> None:
    y = torch.tensor([1.5], requires_grad=True)
    binarize_mask(importance_mask(y.view(1, 1, 1, 1), 3)).sum().backward()
    assert y.grad is not None and float(y.grad.sum()) == pytest.approx(1.0)


def test_quantizer_hard_forward_soft_backward() -> None:
    torch.manual_seed(0)
    q = LearnedCenterQuantizer(6)
    z = torch.randn(100, requires_grad=True)
    z_bar, symbols = q(z)
    assert torch.equal(z_bar.detach(), q.centers.detach()[symbols])
    distance = (z.detach()[:, None] - q.centers.detach()).abs()
    assert torch.equal(symbols, distance.argmin(1))
    z_bar.sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0  # soft path gives gradients
    assert q.centers.grad is not None and q.centers.grad.abs().sum() > 0


def test_quantizer_symbols_and_values_are_inverse() -> None:
    q = LearnedCenterQuantizer(6)
    symbols = torch.randint(0, 6, (50,))
    assert torch.equal(q.symbols(q.values(symbols).detach()), symbols)


def test_model_shapes_and_heads() -> None:
    config = preset("tiny", importance_heads=3)
    model = create_model(config)
    x = torch.rand(2, 3, 32, 48) * 255
    out = model(x, head=2)
    assert out["x_hat"].shape == x.shape
    assert out["symbols"].shape == (2, config.latent_channels, 4, 6)
    assert out["logits"].shape == (2, config.num_centers, config.latent_channels, 4, 6)
    with pytest.raises(ImgcompError):
        model(x, head=3)


def test_importance_pool_makes_the_map_constant_over_blocks() -> None:
    """With ``importance_pool = 2`` the map is one value per 2x2 latent positions (edge blocks
    included, for odd latent sizes); models saved before the field existed load with 1."""
    torch.manual_seed(0)
    config = preset("tiny", importance_heads=1, importance_pool=2)
    model = create_model(config).eval()
    _, _, y = model.analyse(torch.rand(1, 3, 40, 56) * 255, 0)  # latent 5 x 7
    assert y.shape[-2:] == (5, 7)
    blocks = torch.nn.functional.pad(y, (0, 1, 0, 1), mode="replicate").unfold(2, 2, 2).unfold(3, 2, 2)
    assert torch.equal(blocks.amax((-1, -2)), blocks.amin((-1, -2)))
    assert len(y.unique()) > 1
    old = preset("tiny").to_dict()
    del old["importance_pool"]
    assert type(config).from_dict(old).importance_pool == 1


def test_mask_symbol_marks_masked_out_positions_and_keeps_the_reconstruction() -> None:
    """With ``mask_symbol``, P codes exactly the masked-out positions as symbol L (its input: Q(0)'s
    value and a 0 flag); D still gets Q(0) there, so E and D are untouched by the choice."""
    torch.manual_seed(0)
    config = preset("tiny", importance_heads=2, mask_symbol=True)
    model = create_model(config).eval()
    x = torch.rand(2, 3, 32, 48) * 255
    with torch.no_grad():
        model.encoder[-1].bias[config.latent_channels] = 0.0  # head 0: about half the channels
        z, mask = model.encode_latent(x, 0)
        z_hat, symbols = model.quantize(z)
        coded = model.context_symbols(symbols, mask)
        out = model(x, 0)
    L = config.num_centers
    assert model.num_symbols == L + 1 and model.masked_out_symbol() == L
    assert torch.equal(coded == L, mask == 0) and 0 < int((coded == L).sum()) < coded.numel()
    assert torch.equal(coded, out["symbols"]) and out["logits"].shape[1] == L + 1
    assert torch.equal(model.symbol_values(coded), z_hat)
    inputs = model.context_inputs(coded)
    assert inputs.shape == (2, 2, config.latent_channels, 4, 6)
    assert torch.equal(inputs[:, 1], (mask > 0).float()) and torch.equal(inputs[:, 0], z_hat)
    classic = create_model(preset("tiny", importance_heads=2)).eval()
    assert classic.masked_out_symbol() == int(classic.quantizer.symbols(torch.zeros(1))[0])
    assert torch.equal(classic.context_symbols(symbols, mask), symbols)


def test_unknown_architecture_and_preset() -> None:
    with pytest.raises(ImgcompError, match="unknown system"):
        create_model(preset("tiny", architecture="nope"))
    with pytest.raises(ImgcompError):
        preset("huge")
