"""Make the LPIPS test pairs in tests/fixtures/lpips/pairs.npz (run once, in the project venv).

Reference crops (64x64, and a few odd-sized 61x53 ones) from imgcomp's demo photograph and
scikit-image's astronaut, coffee and chelsea images, each with its distortions: JPEG at quality
10 and 40, Gaussian blur (radius 1.5), Gaussian noise (sigma 12, seeded), and shifts of the crop
window by (1, 0), (2, 3) and (0, 5) pixels (the case ST-LPIPS was made for). Stored as uint8 (each reference once, ``index`` tells a distortion's reference) so
that the reference values (scripts/lpips_reference.py) and the tests see the same pixels.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter
from skimage import data as skdata

ROOT = Path(__file__).resolve().parents[1]


def sources() -> list[tuple[str, np.ndarray]]:
    demo = np.asarray(Image.open(ROOT / "src/imgcomp/assets/demo.png").convert("RGB"))
    return [("demo", demo), ("astronaut", skdata.astronaut()), ("coffee", skdata.coffee()),
            ("chelsea", skdata.chelsea())]


def jpeg(a: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def main(out: Path = ROOT / "tests/fixtures/lpips/pairs.npz") -> None:
    rng = np.random.default_rng(2019)
    arrays = {key: [] for key in ("ref", "index", "dist", "names", "odd_ref", "odd_index", "odd_dist", "odd_names")}
    for name, image in sources():
        h, w = image.shape[:2]
        for size, (r, c) in [((64, 64), (h // 3, w // 3)), ((53, 61), (h // 2, w // 2))]:
            crop = lambda dy, dx: np.ascontiguousarray(image[r + dy : r + dy + size[0], c + dx : c + dx + size[1]])
            ref = crop(0, 0)
            cases = {
                "jpeg10": jpeg(ref, 10),
                "jpeg40": jpeg(ref, 40),
                "blur1.5": np.asarray(Image.fromarray(ref).filter(ImageFilter.GaussianBlur(1.5))),
                "noise12": np.clip(ref + rng.normal(0, 12, ref.shape), 0, 255).round().astype(np.uint8),
                "shift1,0": crop(1, 0),
                "shift2,3": crop(2, 3),
                "shift0,5": crop(0, 5),
            }
            if size != (64, 64):
                cases = {k: cases[k] for k in ("jpeg10", "noise12", "shift2,3")}
            prefix = "" if size == (64, 64) else "odd_"
            arrays[prefix + "ref"].append(ref)
            for kind, dist in cases.items():
                arrays[prefix + "index"].append(len(arrays[prefix + "ref"]) - 1)
                arrays[prefix + "dist"].append(dist)
                arrays[prefix + "names"].append(f"{name}/{kind}")
    np.savez_compressed(out, **{key: np.stack(value) if "ref" in key or "dist" in key else np.array(value)
                                for key, value in arrays.items()})
    print(f"{out}: {len(arrays['names'])} pairs of 64x64, {len(arrays['odd_names'])} of 61x53")


if __name__ == "__main__":
    main(*[Path(p) for p in sys.argv[1:]])
