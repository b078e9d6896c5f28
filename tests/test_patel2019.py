"""Patel et al. 2019 (Deep Perceptual Compression): the dpl/dpc criteria, the k2/s2 decoder and its
start from a k5 one, the system's recipes, shipped models of one paper coded by another system,
and LPIPS in evaluation and reports (BD-rate on 1 - LPIPS, older results without LPIPS)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import imgcomp.lpips as lpips_module
from imgcomp.criteria import available_criteria, get_criterion, ms_ssim_similarity
from imgcomp.errors import ImgcompError
from imgcomp.eval import EvalRecord, ResultsFile, evaluate_folder, load_results, save_results
from imgcomp.eval.report import LPIPS_FILES, REPORT_FILES, build_report, merge_results, write_report
from imgcomp.models.export import export_model, load_model
from imgcomp.systems import get_system
from imgcomp.systems.mentzer2018.config import preset
from imgcomp.systems.mentzer2018.layers import kernel2_from_upconv, upconv
from imgcomp.systems.mentzer2018.model import ConditionalProbabilityCodec
from imgcomp.systems.mentzer2018.training import MentzerTask, TrainConfig

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture
def random_lpips(monkeypatch):
    """LPIPS networks with fixed random weights instead of the authors' (which may not be offline)."""
    made: dict = {}

    def network(net="alex", variant="shift_tolerant", **kwargs):
        if (net, variant) not in made:
            torch.manual_seed(7)
            model = lpips_module.LPIPS(net, variant)
            with torch.no_grad():
                for parameter in model.parameters():
                    parameter.copy_(torch.randn_like(parameter) * 0.1)
                for lin in model.lins:
                    lin.weight.abs_()
            made[(net, variant)] = model
        return made[(net, variant)]

    monkeypatch.setattr(lpips_module, "lpips_network", network)
    return network


def _pair(seed: int = 0, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 3, size, size, generator=g) * 255
    return x, (x + torch.randn(x.shape, generator=g) * 20).clamp(0, 255)


# --- criteria ------------------------------------------------------------------------------------


def test_dpl_and_dpc_are_registered() -> None:
    assert {"dpl", "dpc", "ms_ssim"} <= set(available_criteria())
    with pytest.raises(ImgcompError, match="LPIPS backbone"):
        get_criterion("dpl", net="resnet")


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_dpc_is_scaled_lpips_plus_lambda_one_minus_ms_ssim(random_lpips, net: str) -> None:
    x, y = _pair()
    x, y = x[:1], y[:1]
    distance = float(random_lpips(net)(y, x).mean())
    assert distance > 0
    ms = float(ms_ssim_similarity(x, y))
    dpl = float(get_criterion("dpl", scale=10.0, net=net)(x, y))
    dpc = float(get_criterion("dpc", scale=10.0, net=net, ms_ssim_weight=0.5)(x, y))
    assert dpl == pytest.approx(10.0 * distance, rel=1e-5)
    assert dpc == pytest.approx(10.0 * (distance + 0.5 * (1.0 - ms)), rel=1e-5)
    assert float(get_criterion("dpc", net=net)(x, x)) == pytest.approx(0.0, abs=1e-3)


def test_dpc_trains_the_reconstruction_never_the_lpips_network(random_lpips) -> None:
    x, y = _pair(1)
    y.requires_grad_(True)
    get_criterion("dpc")(x, y).backward()
    assert y.grad is not None and y.grad.abs().sum() > 0
    y.grad = None
    x.requires_grad_(True)
    get_criterion("dpl")(x, y).backward()
    assert y.grad.abs().sum() > 0
    assert x.grad is None  # DPL's original is a target: no backward pass through its side
    assert all(p.grad is None and not p.requires_grad for p in random_lpips("alex").parameters())


# --- the k2/s2 decoder ---------------------------------------------------------------------------


def test_decoder_kernel_2_is_kernel_2_stride_2_transposed_convolutions() -> None:
    model = ConditionalProbabilityCodec(preset("tiny", decoder_kernel=2))
    ups = [m for m in model.decoder.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert len(ups) == 3
    assert all(m.kernel_size == (2, 2) and m.stride == (2, 2) and m.padding == (0, 0) for m in ups)
    z = torch.zeros(1, model.config.latent_channels, 5, 7)
    assert model.decoder.eval()(z).shape == (1, 3, 40, 56)


@pytest.mark.parametrize("kernel", [3, 5])
def test_collapsed_kernel_reproduces_the_wide_upconv_on_constant_input(kernel: int) -> None:
    torch.manual_seed(kernel)
    wide = upconv(4, 3, kernel, batch_norm=False, relu=False)[0]
    narrow = upconv(4, 3, 2, batch_norm=False, relu=False)[0]
    with torch.no_grad():
        narrow.weight.copy_(kernel2_from_upconv(wide.weight))
        narrow.bias.copy_(wide.bias)
        x = torch.randn(1, 4, 1, 1).expand(1, 4, 6, 6).contiguous()
        a, b = wide(x), narrow(x)
    assert a.shape == b.shape == (1, 3, 12, 12)
    torch.testing.assert_close(a[..., 2:-2, 2:-2], b[..., 2:-2, 2:-2], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(wide.weight.sum(), torch.zeros(())) and kernel2_from_upconv(wide.weight).shape[-1] == 2
    with pytest.raises(ValueError):
        kernel2_from_upconv(torch.zeros(2, 2, 4, 4))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for i in range(3):
        yy, xx = np.mgrid[0:72, 0:88]
        image = np.stack([xx * 3, yy * 3, (xx * yy) % 256], -1) + rng.normal(0, 10, (72, 88, 3))
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(root / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def k5_model(tmp_path_factory) -> Path:
    torch.manual_seed(3)
    model = ConditionalProbabilityCodec(preset("tiny", importance_heads=2))
    folder = tmp_path_factory.mktemp("k5") / "model"
    export_model(model, folder, {"trained_steps": 0})
    return folder


def test_a_k2_run_starts_from_a_k5_model_with_collapsed_kernels(random_lpips, data, k5_model, tmp_path) -> None:
    start = load_model(k5_model)
    config = TrainConfig(
        data=str(data), init_from=str(k5_model), decoder_kernel=2, criterion="dpc", steps=2, batch_size=2,
        crop=32, workers=0, head_target_bpp=[0.2, 0.5],
    )
    task = MentzerTask(config, tmp_path / "run")
    assert task.model.config.decoder_kernel == 2
    source, own = start.model.state_dict(), task.model.state_dict()
    for key in ("decoder.0.0.weight", "decoder.2.0.weight", "decoder.3.0.weight"):
        assert own[key].shape[-1] == 2 and source[key].shape[-1] != 2
        torch.testing.assert_close(own[key], kernel2_from_upconv(source[key]))
    for key in ("encoder.0.0.weight", "decoder.1.tail.0.weight", "quantizer.centers"):
        torch.testing.assert_close(own[key], source[key])
    task.train_mode()
    x = torch.rand(2, 3, 32, 32) * 255
    record, stepped = task.step(x, 0)
    assert stepped == ["ae", "p"] and np.isfinite(record["loss"]) and record["distortion"] > 0


def test_training_settings_of_the_criterion_are_checked(data) -> None:
    with pytest.raises(ImgcompError, match="criterion"):
        TrainConfig(data=str(data), criterion="lpips")
    with pytest.raises(ImgcompError, match="lpips_net"):
        TrainConfig(data=str(data), criterion="dpc", lpips_net="squeeze")


# --- the system and its recipes ------------------------------------------------------------------


def test_patel2019_recipes_are_mentzer2018_training_with_the_dpc_objective(data) -> None:
    system = get_system("patel2019")
    assert "Deep Perceptual Compression" in system.citation
    assert system.config_class is get_system("mentzer2018").config_class
    assert system.training() is get_system("mentzer2018").training()
    recipes = system.recipes()
    config = recipes.build_config("cpu-dpc", {"data": str(data)})
    assert isinstance(config, TrainConfig)
    assert (config.criterion, config.lpips_net, config.ms_ssim_weight, config.decoder_kernel) == ("dpc", "alex", 1.0, 2)
    assert config.init_from == "mentzer2018/cpu-colour-lp"
    assert recipes.build_config("cpu-dpc-vgg", {"data": str(data)}).lpips_net == "vgg"
    assert recipes.build_config("cpu-msssim-k2", {"data": str(data)}).criterion == "ms_ssim"
    with pytest.raises(ImgcompError, match="unknown recipe"):
        recipes.build_config("nope", {"data": str(data)})


def test_cli_lists_patel2019_recipes() -> None:
    from imgcomp.cli import _register_commands, app

    _register_commands()
    result = CliRunner().invoke(app, ["train", "--system", "patel2019", "--list-recipes"])
    assert result.exit_code == 0, result.output
    assert "cpu-dpc:" in result.output and "cpu-msssim-k2:" in result.output


def test_a_model_shipped_under_patel2019_is_found_by_its_mentzer2018_tag(k5_model, tmp_path, monkeypatch) -> None:
    import shutil

    import imgcomp.zoo as zoo
    from imgcomp.systems import SYSTEM_IDS

    root = tmp_path / "weights"
    shutil.copytree(k5_model, root / "patel2019" / "dpc")
    monkeypatch.setattr(zoo, "WEIGHTS_ROOT", root)
    assert "patel2019/dpc" in zoo.shipped_models()
    tag = bytes.fromhex(load_model(k5_model).weights_sha256)[:8]
    assert zoo.coding_system("patel2019/dpc", root / "patel2019" / "dpc") == "mentzer2018"
    assert zoo.shipped_name_by_tag(tag, SYSTEM_IDS["mentzer2018"], None) == "patel2019/dpc"
    assert zoo.shipped_name_by_tag(tag, SYSTEM_IDS["patel2019"], None) is None


# --- LPIPS in evaluation and reports -------------------------------------------------------------


def _record(image, codec, setting, bpp, quality, lpips=None, net="alex"):
    return EvalRecord(
        image=image, image_sha256="0" * 64, width=768, height=512, codec=codec, library="test 1.0",
        setting=setting, bytes=round(bpp * 768 * 512 / 8), bpp=bpp, payload_bytes=None, payload_bpp=None,
        psnr=28.0 + 10 * quality, ms_ssim=quality, ms_ssim_ycbcr=quality, encode_seconds=0.01,
        decode_seconds=0.002, lpips=lpips, lpips_net=None if lpips is None else net,
        lpips_seconds=None if lpips is None else 0.5,
    )


def _results(path: Path, records: list[EvalRecord]) -> Path:
    codecs = sorted({r.codec for r in records})
    config = {
        "images": {name: "0" * 64 for name in sorted({r.image for r in records})},
        "codecs": {c: {"label": c.upper(), "library": "test 1.0", "settings": [], "parameters": {}} for c in codecs},
    }
    save_results(path, ResultsFile(config=config, records=records))
    return path


def _lpips_pair(scale: float, lpips_scale: float = 1.0) -> list[EvalRecord]:
    """'new' needs ``scale`` times ref's bits for ref's LPIPS; its MS-SSIM is that of ref at the same bpp."""
    records = []
    for image, offset in (("a.png", 0.0), ("b.png", 0.03)):
        for i, bpp in enumerate([0.1, 0.2, 0.4, 0.8, 1.6]):
            distance = 0.5 - 0.08 * i + offset
            quality = 0.9 + 0.02 * i
            records.append(_record(image, "ref", i, bpp, quality, distance))
            records.append(_record(image, "new", i, bpp * scale, quality, distance * lpips_scale))
    return records


def test_lpips_bd_rate_uses_one_minus_lpips(tmp_path) -> None:
    report = build_report(merge_results([_results(tmp_path / "r.json", _lpips_pair(0.8))]), "ref")
    assert report.lpips_net == "alex"
    assert report.bd_rates["lpips"]["new"].mean == pytest.approx(-20.0, abs=1e-6)
    # the MS-SSIM curve was shifted to fewer bits too
    assert report.bd_rates["ms_ssim_db"]["new"].mean == pytest.approx(-20.0, abs=1e-6)
    # better LPIPS at the same rate is a negative BD-rate (lower is better handled)
    better = build_report(merge_results([_results(tmp_path / "b.json", _lpips_pair(1.0, 0.9))]), "ref")
    assert better.bd_rates["lpips"]["new"].mean < -5.0
    assert better.bd_rates["ms_ssim_db"]["new"].mean == pytest.approx(0.0, abs=1e-6)
    markdown = report.to_markdown()
    assert "LPIPS |" in markdown and "-20.0%" in markdown and "1 - LPIPS" in markdown
    written = write_report(report, tmp_path / "rep")
    assert sorted(p.name for p in written) == sorted(REPORT_FILES + LPIPS_FILES)
    saved = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert saved["bd_rate"]["lpips"]["new"]["mean_percent"] == pytest.approx(-20.0, abs=1e-6)
    assert saved["timing"]["new"]["lpips_median_s"] == pytest.approx(0.5)


def test_results_without_lpips_still_load_and_report(tmp_path) -> None:
    path = _results(tmp_path / "old.json", [_record(i, c, s, b, q) for i, c, s, b, q in [
        (img, codec, k, 0.1 * 2**k * (0.9 if codec == "new" else 1.0), 0.9 + 0.02 * k)
        for img in ("a.png", "b.png") for codec in ("ref", "new") for k in range(4)]])
    data = json.loads(path.read_text())
    for record in data["records"]:  # as imgcomp 0.5 wrote them
        for key in ("lpips", "lpips_net", "lpips_seconds"):
            del record[key]
    path.write_text(json.dumps(data))
    assert load_results(path).records[0].lpips is None
    report = build_report(merge_results([path]), "ref")
    assert not report.has_lpips and "lpips" not in report.bd_rates
    assert "LPIPS" not in report.to_markdown()
    written = write_report(report, tmp_path / "rep")
    assert sorted(p.name for p in written) == sorted(REPORT_FILES)


def test_a_codec_without_lpips_gets_one_note_and_mixed_networks_drop_lpips(tmp_path) -> None:
    records = _lpips_pair(0.8)
    partial = [r if r.codec == "ref" else _record(r.image, "new", r.setting, r.bpp, r.ms_ssim) for r in records]
    report = build_report(merge_results([_results(tmp_path / "p.json", partial)]), "ref")
    assert report.bd_rates["lpips"]["new"].mean is None
    assert [n for n in report.notes if "LPIPS" in n] == ["no LPIPS recorded for: new"]
    mixed = [r if r.codec == "ref" else _record(r.image, "new", r.setting, r.bpp, r.ms_ssim, r.lpips, "vgg") for r in records]
    report = build_report(merge_results([_results(tmp_path / "m.json", mixed)]), "ref")
    assert not report.has_lpips and any("mix LPIPS networks" in n for n in report.notes)


def test_eval_records_lpips_and_it_is_part_of_the_run(random_lpips, tmp_path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:64, 0:80]
    image = np.stack([xx * 3, yy * 3, (xx + yy) % 256], -1) + rng.normal(0, 8, (64, 80, 3))
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(images / "a.png")
    out = tmp_path / "r.json"
    evaluate_folder(images, out, ["jpeg420"], settings={"jpeg420": [10, 90]}, jobs=1, lpips="alex")
    results = load_results(out)
    assert results.config["lpips"]["net"] == "alex"
    by_setting = {r.setting: r for r in results.records}
    assert all(r.lpips_net == "alex" and r.lpips_seconds > 0 for r in by_setting.values())
    assert by_setting[10].lpips > by_setting[90].lpips > 0  # lower quality, larger distance
    with pytest.raises(ImgcompError, match="LPIPS differs"):
        evaluate_folder(images, out, ["jpeg420"], settings={"jpeg420": [10, 90]}, jobs=1, lpips="none")
    none = tmp_path / "none.json"
    evaluate_folder(images, none, ["jpeg420"], settings={"jpeg420": [50]}, jobs=1, lpips="none")
    assert "lpips" not in load_results(none).config and load_results(none).records[0].lpips is None
    with pytest.raises(ImgcompError, match="--lpips"):
        evaluate_folder(images, tmp_path / "x.json", ["jpeg420"], jobs=1, lpips="squeeze")
