"""Real files: wavefront order, range coding round trips, the .icz container, bad input."""

from __future__ import annotations

import random
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from threadpoolctl import threadpool_info, threadpool_limits

import imgcomp
from imgcomp import container
from imgcomp.api import decode_image, encode_image, read_file
from imgcomp.entropy import SymbolDecoder, SymbolEncoder
from imgcomp.systems.mentzer2018.wavefront import WavefrontContextModel, wavefront_index
from imgcomp.errors import ImgcompError
from imgcomp.systems import create_model
from imgcomp.systems.mentzer2018.config import preset
from imgcomp.systems.mentzer2018.context_model import ContextModel3D
from imgcomp.models.export import export_model, load_model


@pytest.fixture(scope="module", params=[False, True], ids=["q0-masked", "mask-symbol"])
def model_dir(request, tmp_path_factory) -> Path:
    """A tiny untrained 2-head model with non-trivial context-model weights; masked-out positions
    coded as Q(0) (the paper) or as their own symbol (``mask_symbol``)."""
    torch.manual_seed(0)
    config = preset("tiny", importance_heads=2, mask_symbol=request.param)
    model = create_model(config)
    for p in model.context_model.parameters():
        torch.nn.init.normal_(p, std=0.2)
    K = config.latent_channels
    with torch.no_grad():  # larger latents; head 1 keeps few channels, head 2 nearly all
        model.encoder[-1].weight[:K] *= 30.0
        model.encoder[-1].bias[K] = -3.0
        model.encoder[-1].bias[K + 1] = 3.0
    model.eval()
    return export_model(model, tmp_path_factory.mktemp("model") / f"tiny-{request.param}")


def decode_symbols(data: bytes, model):
    """Header, model and symbol volume of a file (Mentzer et al.'s stream)."""
    from imgcomp.systems.mentzer2018.stream import decode_symbols as pull

    header, sections, loaded = read_file(data, model)
    symbols = pull(loaded, SymbolDecoder(sections[container.SECTION_SYSTEM]), header.height, header.width)
    return header, loaded, symbols


def photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 255 / max(width, 1), yy * 255 / max(height, 1), (xx + yy) % 256], -1)
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


def test_masks_respect_the_wavefront() -> None:
    """Every tap of the first layer points to a smaller t, of later layers to a smaller or equal t."""
    model = ContextModel3D(num_centers=6, channels=4)
    for i, layer in enumerate(model.layers()):
        for dc, dh, dw in layer.taps():
            dt = wavefront_index(dc, dh, dw)
            assert dt < 0 if i == 0 else dt <= 0, (i, dc, dh, dw)
            if (dc, dh, dw) != (0, 0, 0):
                assert dt < 0


@pytest.mark.parametrize("features", [1, 2])
@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 4, 5), (5, 2, 7)])
def test_wavefront_logits_equal_the_full_convolution(shape, features: int) -> None:
    """Same logits as P on the whole volume, for one input feature per symbol (its value) or two
    (value and kept flag, 7 symbols: ``mask_symbol``)."""
    torch.manual_seed(1)
    symbols_count = 6 if features == 1 else 7
    model = ContextModel3D(num_centers=symbols_count, channels=5, in_channels=features)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.3)
    inputs = torch.randn(symbols_count, features)
    schedule = WavefrontContextModel(model, inputs, shape)
    for _ in range(2):  # the second pass reuses the first's buffers: stale rows must never be read
        symbols = torch.randint(0, symbols_count, shape)
        full = model(inputs[symbols].permute(3, 0, 1, 2)[None])[0]
        assert torch.allclose(full, schedule.all_logits(symbols), atol=1e-4)


def test_encoder_threads_code_with_the_decoders_probabilities() -> None:
    """The encoder runs layer by layer in several threads, the decoder step by step in one: the
    payload must not depend on the encoder's thread count, and the decoder must read it back."""
    torch.manual_seed(2)
    model = ContextModel3D(num_centers=6, channels=24)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.3)
    centers = torch.linspace(-2, 2, 6)
    shape = (6, 20, 28)
    schedule = WavefrontContextModel(model, centers, shape)
    symbols = torch.randint(0, 6, shape)
    payloads, costs = [], []
    for threads in (1, 2, 3):
        encoder = SymbolEncoder()
        costs.append(schedule.encode(symbols, encoder, threads=threads))
        payloads.append(encoder.finish())
    assert payloads[1] == payloads[0] and payloads[2] == payloads[0]
    assert costs[1] == pytest.approx(costs[0]) and costs[2] == pytest.approx(costs[0])
    assert torch.equal(schedule.decode(SymbolDecoder(payloads[0])), symbols)


def test_range_coder_round_trip_and_cost() -> None:
    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.ones(6), size=3000)
    symbols = np.array([rng.choice(6, p=p) for p in probabilities])
    encoder = SymbolEncoder()
    for lo in range(0, 3000, 700):
        encoder.push(symbols[lo : lo + 700], probabilities[lo : lo + 700])
    payload = encoder.finish()
    decoder = SymbolDecoder(payload)
    decoded = np.concatenate([decoder.pull(probabilities[lo : lo + 700]) for lo in range(0, 3000, 700)])
    assert np.array_equal(decoded, symbols)
    ideal = -np.log2(probabilities[np.arange(3000), symbols]).sum()
    assert len(payload) * 8 < ideal * 1.01 + 64


@pytest.mark.parametrize("size", [(1, 1), (7, 13), (8, 8), (40, 24), (513, 769)])
def test_round_trip_is_exact(model_dir: Path, size) -> None:
    height, width = size
    image = photo(height, width)
    result = encode_image(image, quality=2, model=model_dir, keep_reconstruction=True)
    decoded = decode_image(result.data, model=model_dir)
    assert decoded.shape == (height, width, 3)
    assert np.array_equal(decoded, result.reconstruction)
    assert result.header_bytes < 24  # v4: system id, stream version and the section table
    assert 8 * result.payload_bytes <= result.estimated_bits * 1.01 + 64


def test_low_pass_layer_corrects_the_reconstruction_and_can_be_left_out(model_dir: Path, monkeypatch) -> None:
    """The default file carries the low-pass layer as its own section (smaller block-mean error than
    the bare auto-encoder); ``lowpass=None`` writes only the system's section."""
    from imgcomp.postfilter.lowpass import DEFAULT_LOWPASS, LowpassSettings

    image = photo(48, 80, seed=2)
    bare = encode_image(image, quality=2, model=model_dir, keep_reconstruction=True, lowpass=None)
    corrected = encode_image(image, quality=2, model=model_dir, keep_reconstruction=True, lowpass=DEFAULT_LOWPASS)
    fine = encode_image(image, quality=2, model=model_dir, keep_reconstruction=True, lowpass=LowpassSettings(16, 1))
    for result in (bare, corrected, fine):
        assert np.array_equal(decode_image(result.data, model=model_dir), result.reconstruction)

    def block_error(pixels: np.ndarray) -> float:
        blocks = lambda a: a.astype(float).reshape(3, 16, 5, 16, 3).mean(axis=(1, 3))
        return float(np.abs(blocks(pixels) - blocks(image)).mean())

    assert block_error(fine.reconstruction) < block_error(corrected.reconstruction) < 0.5 * block_error(bare.reconstruction)
    assert len(bare.data) < len(corrected.data) < len(fine.data)
    assert set(container.unpack(bare.data)[1]) == {container.SECTION_SYSTEM}
    sections = container.unpack(corrected.data)[1]
    assert set(sections) == {container.SECTION_SYSTEM, container.SECTION_LOWPASS}
    assert sections[container.SECTION_SYSTEM] == container.unpack(bare.data)[1][container.SECTION_SYSTEM]


def test_default_encoder_searches_the_low_pass_settings(model_dir: Path, monkeypatch) -> None:
    """By default the encoder codes the layer with the settings ``choose_lowpass`` picks for the
    image (and its estimate of the latent's bits); decoders read them from the file."""
    import imgcomp.api as codec_module
    from imgcomp.postfilter.lowpass import choose_lowpass

    image = photo(64, 96, seed=5)
    calls = []

    def spy(original, decoded, latent_bits):
        calls.append(latent_bits)
        return choose_lowpass(original, decoded, latent_bits)

    monkeypatch.setattr(codec_module, "choose_lowpass", spy)
    auto = encode_image(image, quality=2, model=model_dir, keep_reconstruction=True)
    assert len(calls) == 1 and 0 < calls[0] < auto.estimated_bits
    assert np.array_equal(decode_image(auto.data, model=model_dir), auto.reconstruction)
    chosen, _ = choose_lowpass(image, encode_image(image, quality=2, model=model_dir, keep_reconstruction=True, lowpass=None).reconstruction, calls[0])
    assert encode_image(image, quality=2, model=model_dir, lowpass=chosen).data == auto.data
    with pytest.raises(ImgcompError, match="lowpass must be"):
        encode_image(image, quality=2, model=model_dir, lowpass="32x4")


def test_latent_refinement_lowers_the_objective_and_writes_ordinary_files(model_dir: Path, monkeypatch) -> None:
    """``refine_steps``: the coded latent and importance map score no worse on the refinement
    objective than the encoder's (the best pair seen is kept), positions the refined mask
    switches off are zero, and the file decodes exactly with the unchanged decoder; 0 steps
    writes the same bytes as before refinement existed."""
    import imgcomp.systems.mentzer2018.refine as refine
    from imgcomp.postfilter.lowpass import DEFAULT_LOWPASS
    from imgcomp.systems.mentzer2018.refine import refine_latent
    from imgcomp.tensors import image_to_tensor, pad_to_multiple

    image = photo(44, 60, seed=3)  # not multiples of 8 or of the low-pass block
    codec = load_model(model_dir).model
    x = pad_to_multiple(image_to_tensor(image), 8)
    start, mask = refine_latent(codec, x, 1, 0, 44, 60, DEFAULT_LOWPASS)
    with torch.no_grad():
        assert torch.equal(start, codec.encode_latent(x, 1)[0])
    seen = []
    original = refine.refinement_objective

    def recording(*args, **kwargs):
        value = original(*args, **kwargs)
        seen.append(float(value.detach()))
        return value

    monkeypatch.setattr(refine, "refinement_objective", recording)
    refined, refined_mask = refine_latent(codec, x, 1, 8, 44, 60, DEFAULT_LOWPASS)
    monkeypatch.undo()
    assert len(seen) == 9 and min(seen) < seen[0]  # the encoder's own pair is scored first
    assert not torch.equal(start, refined)
    assert torch.all(refined[refined_mask.expand_as(refined) == 0] == 0)
    assert not any(p.requires_grad for p in codec.parameters())

    plain = encode_image(image, quality=2, model=model_dir, keep_reconstruction=True)
    assert encode_image(image, quality=2, model=model_dir, refine_steps=0).data == plain.data
    result = encode_image(image, quality=2, model=model_dir, keep_reconstruction=True, refine_steps=8)
    assert result.data != plain.data
    assert np.array_equal(decode_image(result.data, model=model_dir), result.reconstruction)
    with pytest.raises(ImgcompError, match="refine_steps"):
        encode_image(image, quality=2, model=model_dir, refine_steps=-1)


def test_refinement_refuses_images_it_cannot_hold_in_memory(model_dir: Path, monkeypatch) -> None:
    import imgcomp.systems.mentzer2018.refine

    monkeypatch.setattr(imgcomp.systems.mentzer2018.refine, "MAX_PIXELS", 40 * 40)
    with pytest.raises(ImgcompError, match="too large to refine"):
        encode_image(photo(48, 40), quality=1, model=model_dir, refine_steps=1)
    assert encode_image(photo(40, 40), quality=1, model=model_dir, refine_steps=1).data
    tiny = photo(7, 30)  # too small for MS-SSIM: coded as the encoder has it
    assert encode_image(tiny, quality=1, model=model_dir, refine_steps=3).data == encode_image(tiny, quality=1, model=model_dir).data


def test_refining_codec_for_evaluation(model_dir: Path) -> None:
    """A model folder as a refining codec (what ``imgcomp eval`` measures): named by system and
    folder with the step count, which shows in the label and the parameters; its files decode."""
    from imgcomp.codecs import get_codec, register_model_codec

    name = register_model_codec(model_dir, refine_steps=3)
    assert name == f"mentzer2018/{model_dir.name.lower()}+refine3"
    codec = get_codec(name)
    assert codec.refine_steps == 3 and "3 steps" in codec.label and codec.parameters()["refine_steps"] == 3
    assert codec.parameters()["system"] == "mentzer2018"
    image = photo(32, 40, seed=4)
    data = codec.encode(image, 2)
    assert data == encode_image(image, quality=2, model=model_dir, refine_steps=3).data
    assert codec.decode(data).shape == (32, 40, 3)
    with pytest.raises(ImgcompError, match="refine_steps"):
        register_model_codec(model_dir, refine_steps=-1)


def test_encode_command_low_pass_options(model_dir: Path, tmp_path: Path) -> None:
    Image.fromarray(photo(24, 32)).save(tmp_path / "in.png")

    def encode(*options: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "imgcomp", "encode", str(tmp_path / "in.png"), "-m", str(model_dir), *options],
            capture_output=True, text=True,
        )

    refused = encode("--lowpass-block", "24")
    assert refused.returncode != 0 and "block size must be one of" in refused.stderr
    assert "Traceback" not in refused.stderr and not (tmp_path / "in.icz").exists()
    assert encode("--lowpass-block", "0").returncode == 0
    bare = (tmp_path / "in.icz").read_bytes()
    assert encode("--lowpass-step", "2", "--force").returncode == 0
    assert len((tmp_path / "in.icz").read_bytes()) > len(bare)
    refused = encode("--lowpass-block", "0", "--lowpass-step", "2", "--force")
    assert refused.returncode != 0 and "--lowpass-step" in refused.stderr and "Traceback" not in refused.stderr
    assert encode("--force").returncode == 0  # settings searched per image
    refused = encode("--refine", "-3", "--force")
    assert refused.returncode != 0 and "--refine" in refused.stderr and "Traceback" not in refused.stderr
    assert encode("--refine", "2", "--force").returncode == 0


def test_compare_command_takes_a_model_folder(model_dir: Path, tmp_path: Path) -> None:
    """``imgcomp compare -m RUN/model``: the folder joins the figure as codec SYSTEM/NAME."""
    Image.fromarray(photo(48, 64, seed=6)).save(tmp_path / "in.png")
    result = subprocess.run(
        [sys.executable, "-m", "imgcomp", "compare", str(tmp_path / "in.png"), "--bpp", "0.5", "-o", str(tmp_path / "c.png"),
         "-c", "jpeg420", "-m", str(model_dir)],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    lines = result.stdout.splitlines()
    assert len(lines) == 3 and lines[0].startswith("JPEG 4:2:0") and "quality" in lines[1]


def test_thread_counts_and_another_process_decode_the_same_symbols(model_dir: Path, tmp_path: Path) -> None:
    image = photo(37, 51, seed=3)
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1, user_api="blas"):
            result = encode_image(image, quality=1, model=model_dir, keep_reconstruction=True)
    finally:
        torch.set_num_threads(2)
    with threadpool_limits(2, user_api="blas"):  # OpenBLAS rounds differently on 2 threads
        _, _, symbols_two_threads = decode_symbols(result.data, model=model_dir)
    codec = load_model(model_dir).model
    with torch.no_grad():
        z, mask = codec.encode_latent(
            torch.nn.functional.pad(torch.from_numpy(image).permute(2, 0, 1)[None].float(), (0, 5, 0, 3), mode="replicate"), 0
        )
    assert torch.equal(symbols_two_threads, codec.context_symbols(codec.quantizer.symbols(z), mask)[0])
    path = tmp_path / "x.icz"
    path.write_bytes(result.data)
    script = (
        "import sys, torch, numpy as np; torch.set_num_threads(1);"
        "from imgcomp.api import decode_image;"
        f"np.save(sys.argv[1], decode_image(open(sys.argv[2], 'rb').read(), model=r'{model_dir}'))"
    )
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "out.npy"), str(path)], check=True)
    assert np.array_equal(np.load(tmp_path / "out.npy"), decode_image(result.data, model=model_dir))


def test_coders_in_several_threads_do_not_disturb_each_other(model_dir: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def blas_threads() -> list[int]:
        return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]

    before = blas_threads()
    images = [photo(40 + 8 * i, 56, seed=i) for i in range(4)]
    expected = [encode_image(image, quality=2, model=model_dir).data for image in images]
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(lambda image: imgcomp.compress(image, 2, model=model_dir), images)) == expected
        decoded = list(pool.map(lambda data: decode_image(data, model=model_dir), expected))
    assert [d.shape[:2] for d in decoded] == [image.shape[:2] for image in images]
    assert [np.array_equal(d, decode_image(data, model=model_dir)) for d, data in zip(decoded, expected)] == [True] * 4
    assert blas_threads() == before  # the coders' one-thread limit is lifted afterwards


def test_public_api_and_pillow_plugin(model_dir: Path, tmp_path: Path) -> None:
    """``imgcomp.compress`` / ``decompress`` and Pillow with the default (shipped) model."""
    image = photo(30, 45)
    data = imgcomp.compress(image, quality=1)
    decoded = imgcomp.decompress(data)
    assert isinstance(decoded, Image.Image) and decoded.size == (45, 30)
    path = tmp_path / "x.icz"
    path.write_bytes(data)
    with Image.open(path) as opened:
        assert opened.format == "ICZ" and opened.size == (45, 30)
        assert np.array_equal(np.asarray(opened.convert("RGB")), np.asarray(decoded))
    Image.fromarray(image).save(tmp_path / "saved.icz", quality=1)
    assert (tmp_path / "saved.icz").read_bytes() == data


def test_every_shipped_model_round_trips_and_files_find_their_model() -> None:
    """The bundled weights load, code a photo at the lowest and highest quality, and a file decodes
    without naming its model (the header's tag picks it among the shipped ones)."""
    from imgcomp.zoo import DEFAULT_MODEL, get_model, shipped_models

    assert DEFAULT_MODEL in shipped_models()
    image = photo(40, 56, seed=5)
    for name in shipped_models():
        loaded = get_model(name)
        assert name.split("/")[0] in ("mentzer2018", "patel2019", "rippel2017") and get_model(name.replace("/", "-")) is loaded
        for quality in (1, loaded.system.qualities(loaded)):
            result = encode_image(image, quality=quality, model=loaded, keep_reconstruction=True)
            # the torch decoder repeats the encoder's arithmetic; the default numpy one is within a level
            assert np.array_equal(decode_image(result.data, engine="torch"), result.reconstruction), (name, quality)
            by_numpy = decode_image(result.data).astype(int)
            assert np.abs(by_numpy - result.reconstruction).max() <= 1, (name, quality)
            assert 8 * result.payload_bytes <= result.estimated_bits * 1.01 + 64


def test_quality_levels_select_the_importance_head(model_dir: Path) -> None:
    """Quality 1 uses head 1, which masks out more channels (more masked-out symbols) than head 2."""
    image = photo(64, 64)
    zero_counts = {}
    for quality in (1, 2):
        data = imgcomp.compress(image, quality=quality, model=model_dir)
        header, loaded, symbols = decode_symbols(data, model=model_dir)
        assert header.quality == quality
        zero_counts[quality] = int((symbols == loaded.model.masked_out_symbol()).sum())
    assert zero_counts[1] > zero_counts[2]
    with pytest.raises(ImgcompError, match="quality"):
        imgcomp.compress(image, quality=3, model=model_dir)


# ---------------------------------------------------------------- bad input
@pytest.fixture(scope="module")
def valid_file(model_dir: Path) -> bytes:
    return imgcomp.compress(photo(20, 28), quality=2, model=model_dir)


def with_crc(head: bytes, payload: bytes) -> bytes:
    return head + struct.pack("<I", zlib.crc32(payload, zlib.crc32(head))) + payload


def test_bad_files_get_clear_errors(model_dir: Path, valid_file: bytes) -> None:
    version = container.FORMAT_VERSION << 4
    tag = valid_file[5:7]

    def v4(quality: int, system: int, stream: int, size: bytes, table: bytes, body: bytes = b"") -> bytes:
        head = container.MAGIC + bytes([version | (quality - 1), system, stream]) + tag + size + table
        return with_crc(head, body)

    cases = {
        "empty": (b"", "magic"),
        "wrong magic": (b"PNG" + valid_file[3:], "magic"),
        "truncated": (valid_file[:-3], "truncated|checksum|length"),
        "header only": (valid_file[:6], "truncated"),
        "flipped bit": (valid_file[:-1] + bytes([valid_file[-1] ^ 1]), "checksum"),
        "unknown version": (valid_file[:2] + bytes([0xF0 | (valid_file[2] & 0x0F)]) + valid_file[3:], "version 15"),
        "older version": (valid_file[:2] + bytes([0x10 | (valid_file[2] & 0x0F)]) + valid_file[3:], "older imgcomp"),
        "absurd size": (v4(1, 1, 1, container._varint(10**6 - 1) * 2, b"\x01\x00\x00"), "too large|size"),
        "quality beyond the model": (v4(6, 1, 1, b"\x07\x07", b"\x01\x00\x00"), "quality"),
        "system id 0": (v4(1, 0, 1, b"\x07\x07", b"\x01\x00\x00"), "system id"),
        "unknown system": (v4(1, 77, 1, b"\x07\x07", b"\x01\x00\x00"), "system id"),
        "another system": (v4(1, 3, 1, b"\x07\x07", b"\x01\x00\x00"), "rippel2017|system id 3"),
        "newer stream": (v4(1, 1, 9, b"\x07\x07", b"\x01\x00\x00"), "stream version 9"),
        "no sections": (v4(1, 1, 1, b"\x07\x07", b"\x00"), "sections"),
        "unknown section": (v4(1, 1, 1, b"\x07\x07", b"\x01\x09\x00"), "section kind"),
        "section twice": (v4(1, 1, 1, b"\x07\x07", b"\x02\x00\x00\x00\x00"), "twice"),
        "low-pass first": (v4(1, 1, 1, b"\x07\x07", b"\x01\x01\x00"), "first section"),
        "lengths beyond the file": (v4(1, 1, 1, b"\x07\x07", b"\x01\x00\x04"), "truncated"),
        "empty low-pass section": (v4(1, 1, 1, b"\x07\x07", b"\x02\x00\x04\x01\x04", b"\0" * 8), "payload|low-pass"),
    }
    for name, (data, message) in cases.items():
        with pytest.raises(ImgcompError, match=message):
            decode_image(data, model=model_dir)
    assert issubclass(ImgcompError, ValueError)


def test_unknown_model_tag(model_dir: Path, valid_file: bytes) -> None:
    with pytest.raises(ImgcompError, match="not installed|not found"):
        decode_image(valid_file)
    other = valid_file[:5] + bytes([valid_file[5] ^ 0xFF]) + valid_file[6:]
    head_len = container.header_bytes(valid_file) - 4
    other = with_crc(other[:head_len], other[head_len + 4 :])
    with pytest.raises(ImgcompError, match="different model"):
        decode_image(other, model=model_dir)


def test_fuzz_random_mutations(model_dir: Path, valid_file: bytes) -> None:
    """Random corruptions, with and without a repaired checksum: an image or ImgcompError."""
    rng = random.Random(0)
    header_length = container.header_bytes(valid_file) - 4
    for case in range(300):
        data = bytearray(valid_file)
        for _ in range(rng.randint(1, 4)):
            kind = rng.random()
            if kind < 0.5 and data:
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            elif kind < 0.75:
                data = data[: rng.randrange(len(data) + 1)]
            else:
                data[rng.randrange(len(data) + 1) : 0] = bytes([rng.randrange(256)])
        data = bytes(data)
        if case % 2 and len(data) > header_length + 4:  # make the payload reach the decoder
            data = with_crc(data[:header_length], data[header_length + 4 :])
        try:
            decoded = decode_image(data, model=model_dir)
        except ImgcompError:
            continue
        assert decoded.dtype == np.uint8 and decoded.ndim == 3


def test_active_channels_counts_leading_nonzero_channels() -> None:
    from imgcomp.systems.mentzer2018.stream import _active_channels

    zero = torch.tensor(2)
    volume = torch.full((5, 3, 4), 2)
    assert _active_channels(volume, zero) == 0
    volume[3, 1, 2] = 0
    assert _active_channels(volume, zero) == 4
    volume[0, 0, 0] = 5
    assert _active_channels(volume, zero) == 4


def test_fully_masked_volume_round_trips(model_dir: Path) -> None:
    """A head that masks every channel codes only the channel count."""
    loaded = load_model(model_dir)
    K = loaded.config.latent_channels
    with torch.no_grad():
        loaded.model.encoder[-1].bias[K] = -40.0  # y = 0: every channel masked
    result = encode_image(photo(16, 16), quality=1, model=loaded, keep_reconstruction=True, lowpass=None)
    assert result.payload_bytes <= 8
    assert np.array_equal(decode_image(result.data, model=loaded), result.reconstruction)


def test_visualize_writes_importance_map_and_latents(model_dir: Path, tmp_path: Path) -> None:
    from imgcomp.systems.mentzer2018.visualize import visualize

    image = tmp_path / "in.png"
    Image.fromarray(photo(40, 56)).save(image)
    paths = visualize(image, model_dir, tmp_path / "viz", quality=1)
    importance = np.asarray(Image.open(paths[0]))
    assert importance.shape == (40, 56, 3)
    assert Image.open(paths[1]).size[0] > 0
    with pytest.raises(ImgcompError):
        visualize(image, model_dir, tmp_path / "viz", quality=1)  # exists, no --force


def test_codec_benchmark_reports_speed_and_cost(model_dir: Path, tmp_path: Path, monkeypatch) -> None:
    import imgcomp.benchmarks
    from imgcomp.benchmarks import codec_speed, machine
    from imgcomp.systems.mentzer2018.bench import naive_decode_seconds

    assert machine()["cpu"] and machine()["cores"] >= 1  # timings say what they were measured on
    image = tmp_path / "in.png"
    Image.fromarray(photo(32, 48)).save(image)
    loaded = load_model(model_dir)
    rows = codec_speed(str(image), loaded, runs=1)
    assert [row["quality"] for row in rows] == [1, 2]
    assert all(row["decode_s_median"] > 0 and row["header_bytes"] < 24 for row in rows)
    asked = []
    monkeypatch.setattr(
        imgcomp.benchmarks, "encode_image",
        lambda *args, refine_steps, **kwargs: asked.append(refine_steps) or encode_image(*args, refine_steps=refine_steps, **kwargs),
    )
    assert len(codec_speed(str(image), loaded, runs=1, refine_steps=3)) == 2 and asked == [3, 3]
    naive = naive_decode_seconds(str(image), loaded, symbols_timed=5)
    assert naive["symbols"] == loaded.config.latent_channels * 4 * 6


def test_benchmarks_do_not_overwrite_their_json_without_force(tmp_path: Path) -> None:
    """Checked before any timing: an existing --out is refused with one line and exit code 2."""
    out = tmp_path / "bench.json"
    out.write_text("mine")
    for command in (["codec"], ["train", "--preset", "cpu"]):
        run = subprocess.run(
            [sys.executable, "-m", "imgcomp", "bench", *command, "--out", str(out)], capture_output=True, text=True,
        )
        assert run.returncode == 2 and "--force" in run.stderr and "Traceback" not in run.stderr
        assert out.read_text() == "mine"
