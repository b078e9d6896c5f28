"""Reference LPIPS values from the authors' own packages, for tests/fixtures/lpips/reference.json.

Runs in a scratch environment, never in the project's: torch + torchvision, and the authors'
wheels installed without their dependencies::

    python3 -m venv /tmp/lpips-tv
    /tmp/lpips-tv/bin/pip install torch==2.14.1 torchvision==0.29.1 numpy scipy tqdm
    /tmp/lpips-tv/bin/pip install --no-deps stlpips-pytorch==0.0.2 lpips==0.1.4
    /tmp/lpips-tv/bin/python scripts/lpips_reference.py

``stlpips_pytorch`` imports IPython and torchsummary (for debugging helpers it never calls on this
path); if they are missing this script puts empty stand-ins in ``sys.modules``.

* ST-LPIPS AlexNet and VGG-16 (variant ``shift_tolerant``) with the weights in the wheel;
* LPIPS v0.1 AlexNet and VGG-16 with the wheel's lin layers on the synthetic backbones of
  tests/lpips_synthetic.py (the torchvision ImageNet weights cannot be downloaded here).

Inputs as the authors' ``im2tensor``: ``uint8 / 127.5 - 1``, one pair at a time.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from lpips_synthetic import synthetic_backbone  # noqa: E402

for missing, attrs in (("IPython", {"embed": lambda *a, **k: None}),
                       ("torchsummary", {"summary": lambda *a, **k: None})):
    try:
        __import__(missing)
    except ImportError:
        sys.modules[missing] = types.SimpleNamespace(**attrs)

import lpips  # noqa: E402
import stlpips_pytorch  # noqa: E402
from stlpips_pytorch import stlpips  # noqa: E402


def as_input(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a.astype(np.float64) / 127.5 - 1.0).float().permute(2, 0, 1)[None]


def distances(model, refs, index, dists) -> list[float]:
    with torch.no_grad():
        return [float(model(as_input(refs[i]), as_input(d)).flatten()[0]) for i, d in zip(index, dists)]


def main() -> None:
    torch.set_num_threads(1)
    pairs = np.load(ROOT / "tests/fixtures/lpips/pairs.npz")
    sets = {"64": ("ref", "index", "dist"), "odd": ("odd_ref", "odd_index", "odd_dist")}
    out = {"versions": {"torch": torch.__version__, "stlpips_pytorch": "0.0.2", "lpips": "0.1.4"},
           "input": "uint8 / 127.5 - 1 (authors' im2tensor), batch of 1", "stlpips": {}, "lpips_v0.1_synthetic": {}}
    for net in ("alex", "vgg"):
        model = stlpips.LPIPS(net=net, variant="shift_tolerant", verbose=False)
        # Their loader uses strict=False: make sure every tensor of the file really landed.
        path = Path(stlpips_pytorch.__file__).parent / f"weights/vST0.0/{net}_shift_tolerant.pth"
        state = torch.load(path, map_location="cpu", weights_only=True)
        have = model.state_dict()
        assert set(state) <= set(have), set(state) - set(have)
        assert all(torch.equal(have[k], v) for k, v in state.items())
        missing = [k for k in have if k not in state and not k.startswith("lins.")]
        assert not missing, missing
        out["stlpips"][net] = {name: distances(model, *(pairs[k] for k in keys)) for name, keys in sets.items()}

        model = lpips.LPIPS(net=net, version="0.1", pnet_rand=True, verbose=False)
        backbone = synthetic_backbone(net)
        theirs = model.net.state_dict()
        loaded = {}
        for key in theirs:  # sliceK.I.weight <- features.I.weight
            _, index, kind = key.split(".")
            loaded[key] = backbone[f"features.{index}.{kind}"]
        assert len(loaded) == len(backbone)
        model.net.load_state_dict(loaded, strict=True)
        out["lpips_v0.1_synthetic"][net] = {name: distances(model, *(pairs[k] for k in keys))
                                            for name, keys in sets.items()}
    target = ROOT / "tests/fixtures/lpips/reference.json"
    target.write_text(json.dumps(out, indent=1) + "\n")
    print(target, {k: {n: len(v["64"]) + len(v["odd"]) for n, v in out[k].items()}
                   for k in ("stlpips", "lpips_v0.1_synthetic")})


if __name__ == "__main__":
    main()
