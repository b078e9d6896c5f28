"""Speed of a Rippel & Bourdev model on one image: ``python -m imgcomp.systems.rippel2017.bench``.

Prints and writes JSON: encode and decode seconds (best of ``--repeats``; network and coder
separately; the decoder network with torch and in numpy, :mod:`.synthesis_numpy`), payload bytes and the table's estimate. Without ``--model``, a randomly initialised
model of ``--preset`` whose table is counted on the image itself (speed figures only: such a
model's files say nothing about compression)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from imgcomp.entropy import SymbolDecoder, SymbolEncoder
from imgcomp.io import load_image
from imgcomp.systems.rippel2017 import bit_context, decoder_numpy, stream
from imgcomp.systems.rippel2017.config import preset
from imgcomp.systems.rippel2017.model import RippelCodec
from imgcomp.systems.rippel2017.symbols import latent_shape
from imgcomp.systems.rippel2017.synthesis_numpy import NumpySynthesis


def _best(function, repeats: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - started)
    return best, result


def multiply_adds(model: RippelCodec, height: int, width: int) -> dict[str, int]:
    """Multiply-adds of the encoder and the decoder's convolutions for one image (machine-independent)."""
    totals = {"encoder": 0, "decoder": 0}
    hooks = []
    for part in totals:
        for module in getattr(model, part).modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                def hook(mod, inputs, output, part=part):
                    kernel = mod.kernel_size[0] * mod.kernel_size[1]
                    if isinstance(mod, torch.nn.Conv2d):
                        totals[part] += output.numel() * mod.in_channels * kernel
                    else:
                        totals[part] += inputs[0].numel() * mod.out_channels * kernel
                hooks.append(module.register_forward_hook(hook))
    pad = model.config.pad_multiple
    x = torch.zeros(1, 3, -(-height // pad) * pad, -(-width // pad) * pad)
    with torch.no_grad():
        model.decode_features(model.encode_features(x))
    for handle in hooks:
        handle.remove()
    return totals


def measure(model: RippelCodec, pixels: np.ndarray, quality: int, repeats: int = 5) -> dict:
    config = model.config
    table = bit_context.CodingTable(model.context_table.numpy())
    height, width = pixels.shape[:2]
    t_net, symbols = _best(lambda: stream.image_symbols(model, pixels, quality), repeats)

    def code():
        encoder = SymbolEncoder()
        bits = bit_context.encode(config, table, symbols, quality - 1, encoder)
        return encoder.finish(), bits

    t_code, (payload, bits) = _best(code, repeats)
    shape = latent_shape(config, height, width)
    t_decode_bits, decoded = _best(lambda: bit_context.decode(config, table, shape, quality - 1, SymbolDecoder(payload)), repeats)
    assert np.array_equal(decoded, symbols)
    t_synth, _ = _best(lambda: stream.reconstruct(model, decoded, quality, height, width), repeats)
    synthesis = NumpySynthesis({k: v.detach().numpy() for k, v in model.state_dict().items()}, config)
    t_numpy, _ = _best(lambda: decoder_numpy.reconstruct(synthesis, decoded, quality, height, width), repeats)
    return {
        "width": width, "height": height, "quality": quality, "threads": torch.get_num_threads(),
        "encode_network_s": t_net, "encode_coder_s": t_code, "encode_s": t_net + t_code,
        "decode_coder_s": t_decode_bits, "decode_network_s": t_synth, "decode_s": t_decode_bits + t_synth,
        "decode_network_numpy_s": t_numpy, "decode_numpy_s": t_decode_bits + t_numpy,
        "multiply_adds": multiply_adds(model, height, width),
        "payload_bytes": len(payload), "estimated_bytes": bits / 8, "binary_decisions": int(symbols.size * config.bits),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("image")
    parser.add_argument("--model", help="an exported rippel2017 model folder (default: random --preset)")
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--quality", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", help="write the JSON here too")
    args = parser.parse_args(argv)
    pixels = load_image(args.image)
    if args.model:
        from imgcomp.models import load_model

        model = load_model(args.model).model
    else:
        torch.manual_seed(0)
        model = RippelCodec(preset(args.preset)).eval().requires_grad_(False)
        model.encoder.to(memory_format=torch.channels_last)
        model.decoder.to(memory_format=torch.channels_last)
        stream.count_table_on(model, pixels, [args.quality or model.config.qualities])
    result = measure(model, pixels, args.quality or model.config.qualities, args.repeats)
    result.update({"image": args.image, "model": args.model or f"random {args.preset} preset"})
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
