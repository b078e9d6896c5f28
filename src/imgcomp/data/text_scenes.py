"""Synthetic text scenes with known text: the test images of the downstream OCR evaluation.

Each scene is a crop of a photo (the training pool, ``imgcomp data prepare``) with text drawn on
it by Pillow/FreeType in Debian's DejaVu fonts (package ``fonts-dejavu-core``): signs (one line on
a coloured plate), labels (small print on a light tag), document snippets (a few lines of serif
text on paper) and overlays (text straight on the photo, black or white after the local
brightness). Cap heights span 12-48 px. Every line of text is one ground-truth item: its string,
its axis-aligned box (the drawn glyphs' extent, ``[x0, y0, x1, y1]`` in pixels, x1/y1 exclusive)
and its words' boxes.

Everything follows from the seed, the background folder, the fonts and Pillow's FreeType: the
same inputs give the same pixels and ground truth (the folder's ``scenes.json`` records the font
files' SHA-256 and the library versions). A missing font is an error, never a silent substitute.

Files written: ``text-NN.png`` and beside each ``text-NN.json``::

    {"format": "imgcomp-text-scene/1", "image": "text-00.png", "width": 768, "height": 512,
     "background": {"file": ..., "package": ..., "license": ...},
     "lines": [{"text": "Platform 7", "box": [x0, y0, x1, y1], "kind": "sign", "font": "sans-bold",
                "cap_height": 31, "words": [{"text": "Platform", "box": [...]}, ...]}, ...]}

Any image with such a ``.json`` beside it (``lines`` with ``text`` and ``box``) can be scored, so
real photos with hand-made ground truth fit the same evaluation.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from imgcomp.data.folder import list_images
from imgcomp.data.manifest import read_manifest
from imgcomp.errors import ImgcompError
from imgcomp.io import check_writable, file_sha256, load_image, write_atomic

SCENE_FORMAT = "imgcomp-text-scene/1"
GENERATOR_VERSION = 1
FONT_PACKAGE = "fonts-dejavu-core"
FONT_SEARCH_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts"))
FONTS: dict[str, str] = {
    "sans": "DejaVuSans.ttf",
    "sans-bold": "DejaVuSans-Bold.ttf",
    "serif": "DejaVuSerif.ttf",
    "serif-bold": "DejaVuSerif-Bold.ttf",
    "mono": "DejaVuSansMono.ttf",
    "mono-bold": "DejaVuSansMono-Bold.ttf",
}
"""Short name -> file, all in Debian's ``fonts-dejavu-core``."""

_SIGN_WORDS = (
    "EXIT", "PARKING", "Station", "Platform", "Open", "Closed", "Coffee", "Bakery", "Pharmacy",
    "Hotel", "Museum", "Library", "Entrance", "Tickets", "Harbour", "Town Hall", "Post Office",
    "Car Park", "Keep Left", "No Entry", "Fresh Bread", "Garden Centre", "Bus Stop", "Taxi",
    "Toilets", "Information", "Ferry", "Bicycle Hire", "Market", "Cinema", "Post", "Hospital",
    "Police", "Fire Station", "Railway", "Airport", "Beach", "Castle", "Bridge Street",
    "Mill Lane", "Church Road", "High Street", "Harbour View", "North Gate", "Old Town",
)
_SIGN_SUFFIXES = ("", "", "", " {n}", " {n}", " {c}{n}", " {n} km", " {n} m", " Open {h}-{h2}")
_LABELS = (
    "Batch {n4}", "Lot {C}-{n4}", "Exp {y}-{mm}-{dd}", "Net wt {n3} g", "Size {size}",
    "Serial {n5}-{C}", "Item {n6}", "Price {n2}.{cc}", "Best before {dd}/{mm}/{y}", "Ref {C}{C}{n4}",
    "Made in Norway", "Keep dry", "Fragile", "This side up", "Room {n3}", "Gate {C}{n2}",
)
_DOCUMENT = (
    "The committee met on Tuesday to discuss the plans for the new harbour wall. "
    "Members agreed that the work should begin in early spring, when the weather allows "
    "boats to be moved safely. A budget of 48,500 was approved for the first phase, "
    "with a review planned for the end of June. Residents may send comments to the town "
    "office before the 14th of March. Opening hours are Monday to Friday from 9 to 17. "
    "Please bring this letter and a form of identification when you visit. The ferry "
    "timetable for the summer season is printed overleaf, together with a map of the "
    "new footpaths along the river and the bus routes 12, 27 and 31."
)
_PLATES = (  # (plate, text) colours of signs
    ((20, 70, 160), (255, 255, 255)), ((0, 110, 60), (255, 255, 255)), ((250, 210, 0), (20, 20, 20)),
    ((240, 240, 235), (20, 20, 20)), ((170, 20, 30), (255, 255, 255)), ((25, 25, 25), (240, 240, 240)),
    ((120, 70, 30), (250, 240, 220)),
)
_SIZES = ("XS", "S", "M", "L", "XL")


@dataclass(frozen=True)
class SceneReport:
    """What :func:`generate_text_scenes` wrote."""

    out: Path
    images: list[Path]
    lines: int
    words: int


def find_font(name: str, search_dirs: Sequence[Path] = FONT_SEARCH_DIRS) -> Path:
    """The file of font ``name`` (a key of :data:`FONTS`); a clear error naming the Debian
    package if it is missing."""
    if name not in FONTS:
        raise ImgcompError(f"unknown font {name!r}; known: {', '.join(FONTS)}")
    filename = FONTS[name]
    for folder in search_dirs:
        direct = Path(folder) / filename
        if direct.is_file():
            return direct
    for folder in search_dirs:
        if Path(folder).is_dir():
            for found in sorted(Path(folder).rglob(filename)):
                return found
    raise ImgcompError(
        f"font {filename} not found under {', '.join(map(str, search_dirs))}; "
        f"install Debian's {FONT_PACKAGE} (apt-get install {FONT_PACKAGE})"
    )


class _Fonts:
    """FreeType fonts by name and cap height (the height of 'H' in pixels)."""

    def __init__(self, search_dirs: Sequence[Path]) -> None:
        self.paths = {name: find_font(name, search_dirs) for name in FONTS}
        self._cache: dict[tuple[str, int], ImageFont.FreeTypeFont] = {}
        self._cap_per_em: dict[str, float] = {}

    def get(self, name: str, cap_height: int) -> ImageFont.FreeTypeFont:
        if name not in self._cap_per_em:
            probe = ImageFont.truetype(str(self.paths[name]), 200)
            top, bottom = probe.getbbox("H", anchor="ls")[1::2]
            self._cap_per_em[name] = (bottom - top) / 200
        size = max(4, round(cap_height / self._cap_per_em[name]))
        key = (name, size)
        if key not in self._cache:
            self._cache[key] = ImageFont.truetype(str(self.paths[name]), size)
        return self._cache[key]


def _fill(template: str, rng: np.random.Generator) -> str:
    def digits(count: int) -> str:
        return str(int(rng.integers(10 ** (count - 1), 10**count)))

    letters = "ABCDEFGHJKLMNPRSTUVWXYZ"
    values = {
        "n": str(int(rng.integers(1, 40))), "n2": digits(2), "n3": digits(3), "n4": digits(4),
        "n5": digits(5), "n6": digits(6), "c": letters[int(rng.integers(len(letters)))],
        "C": letters[int(rng.integers(len(letters)))], "h": str(int(rng.integers(6, 11))),
        "h2": str(int(rng.integers(16, 23))), "y": str(int(rng.integers(2025, 2031))),
        "mm": f"{int(rng.integers(1, 13)):02d}", "dd": f"{int(rng.integers(1, 29)):02d}",
        "cc": f"{int(rng.integers(0, 100)):02d}", "size": _SIZES[int(rng.integers(len(_SIZES)))],
    }
    # str.format would consume every "{C}" with one letter; draw each placeholder afresh.
    out, rest = "", template
    while "{" in rest:
        head, _, tail = rest.partition("{")
        key, _, rest = tail.partition("}")
        out += head + values[key]
        if key in ("C", "c"):
            values[key] = letters[int(rng.integers(len(letters)))]
    return out + rest


def _sign_text(rng: np.random.Generator) -> str:
    word = _SIGN_WORDS[int(rng.integers(len(_SIGN_WORDS)))]
    if rng.random() < 0.3:
        word = word.upper()
    return word + _fill(_SIGN_SUFFIXES[int(rng.integers(len(_SIGN_SUFFIXES)))], rng)


def _label_text(rng: np.random.Generator) -> str:
    return _fill(_LABELS[int(rng.integers(len(_LABELS)))], rng)


def _document_lines(rng: np.random.Generator, count: int, width_chars: int) -> list[str]:
    words = _DOCUMENT.split()
    start = int(rng.integers(0, len(words) - count * 8))
    lines, current = [], ""
    for word in words[start:]:
        if current and len(current) + 1 + len(word) > width_chars:
            lines.append(current)
            current = word
            if len(lines) == count:
                break
        else:
            current = f"{current} {word}".strip()
    return lines


def _text_box(font: ImageFont.FreeTypeFont, text: str, x: int, y: int) -> list[int]:
    """The drawn extent of ``text`` with its baseline's left end at (x, y): [x0, y0, x1, y1]."""
    left, top, right, bottom = font.getbbox(text, anchor="ls")
    return [x + int(left), y + int(top), x + int(right), y + int(bottom)]


def _word_boxes(font: ImageFont.FreeTypeFont, text: str, x: int, y: int) -> list[dict[str, Any]]:
    words, position = [], 0
    for word in text.split(" "):
        if word:
            offset = font.getlength(text[:position])
            words.append({"text": word, "box": _text_box(font, word, x + round(offset), y)})
        position += len(word) + 1
    return words


def _overlaps(box: list[int], taken: list[list[int]], gap: int) -> bool:
    return any(
        box[0] < t[2] + gap and t[0] < box[2] + gap and box[1] < t[3] + gap and t[1] < box[3] + gap
        for t in taken
    )


def _luma(region: np.ndarray) -> float:
    return float((region[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])).mean())


class _Scene:
    def __init__(self, background: np.ndarray, fonts: _Fonts, rng: np.random.Generator) -> None:
        self.image = Image.fromarray(background, "RGB")
        self.draw = ImageDraw.Draw(self.image)
        self.width, self.height = self.image.size
        self.fonts = fonts
        self.rng = rng
        self.taken: list[list[int]] = []
        self.lines: list[dict[str, Any]] = []

    def _place(self, width: int, height: int, tries: int = 60) -> tuple[int, int] | None:
        margin = 6
        if width > self.width - 2 * margin or height > self.height - 2 * margin:
            return None
        for _ in range(tries):
            x = int(self.rng.integers(margin, self.width - margin - width + 1))
            y = int(self.rng.integers(margin, self.height - margin - height + 1))
            if not _overlaps([x, y, x + width, y + height], self.taken, 8):
                self.taken.append([x, y, x + width, y + height])
                return x, y
        return None

    def _line(self, text: str, font_name: str, cap: int, x: int, baseline: int, colour, kind: str) -> None:
        font = self.fonts.get(font_name, cap)
        self.draw.text((x, baseline), text, font=font, fill=colour, anchor="ls")
        self.lines.append({
            "text": text, "box": _text_box(font, text, x, baseline), "kind": kind, "font": font_name,
            "cap_height": cap, "words": _word_boxes(font, text, x, baseline),
        })

    def _extent(self, text: str, font_name: str, cap: int) -> tuple[int, int, int, int]:
        return self.fonts.get(font_name, cap).getbbox(text, anchor="ls")

    def sign(self, cap: int) -> None:
        text, font_name = _sign_text(self.rng), ("sans-bold", "sans", "serif-bold")[int(self.rng.integers(3))]
        left, top, right, bottom = self._extent(text, font_name, cap)
        pad = max(4, cap // 2)
        spot = self._place(right - left + 2 * pad, bottom - top + 2 * pad)
        if spot is None:
            return
        plate, ink = _PLATES[int(self.rng.integers(len(_PLATES)))]
        x, y = spot
        box = [x, y, x + right - left + 2 * pad, y + bottom - top + 2 * pad]
        self.draw.rounded_rectangle(box, radius=pad // 2, fill=plate, outline=ink, width=max(1, cap // 12))
        self._line(text, font_name, cap, x + pad - left, y + pad - top, ink, "sign")

    def label(self, cap: int) -> None:
        text, font_name = _label_text(self.rng), ("mono", "sans", "mono-bold")[int(self.rng.integers(3))]
        left, top, right, bottom = self._extent(text, font_name, cap)
        pad = max(3, cap // 3)
        spot = self._place(right - left + 2 * pad, bottom - top + 2 * pad)
        if spot is None:
            return
        x, y = spot
        paper = tuple(int(v) for v in self.rng.integers(225, 256, size=3))
        self.draw.rectangle([x, y, x + right - left + 2 * pad, y + bottom - top + 2 * pad], fill=paper)
        self._line(text, font_name, cap, x + pad - left, y + pad - top, (15, 15, 15), "label")

    def document(self, cap: int, count: int) -> None:
        lines = _document_lines(self.rng, count, int(self.rng.integers(22, 36)))
        font_name = "serif"
        font = self.fonts.get(font_name, cap)
        ascent, descent = font.getmetrics()
        step = round(1.8 * cap) + descent
        widths = [self._extent(line, font_name, cap) for line in lines]
        pad = max(6, cap)
        width = max(r - min(0, left) for left, _, r, _ in widths) + 2 * pad
        height = step * (len(lines) - 1) + ascent + descent + 2 * pad
        spot = self._place(width, height)
        if spot is None:
            return
        x, y = spot
        self.draw.rectangle([x, y, x + width, y + height], fill=(246, 244, 236))
        for index, line in enumerate(lines):
            self._line(line, font_name, cap, x + pad, y + pad + ascent + index * step, (25, 25, 30), "document")

    def overlay(self, cap: int) -> None:
        text = _sign_text(self.rng) if self.rng.random() < 0.6 else _label_text(self.rng)
        font_name = ("sans-bold", "serif-bold", "sans")[int(self.rng.integers(3))]
        left, top, right, bottom = self._extent(text, font_name, cap)
        spot = self._place(right - left + 4, bottom - top + 4)
        if spot is None:
            return
        x, y = spot
        region = np.asarray(self.image)[y : y + bottom - top + 4, x : x + right - left + 4]
        colour = (10, 10, 10) if _luma(region) > 128 else (250, 250, 250)
        self._line(text, font_name, cap, x + 2 - left, y + 2 - top, colour, "overlay")


def render_scene(
    background: np.ndarray, rng: np.random.Generator, fonts: _Fonts | None = None
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Draw one scene's text on ``background`` (an ``(H, W, 3)`` uint8 image): 2 signs, 2 labels,
    one document snippet and 3 overlays where they fit without overlapping (a few may not);
    returns the image and its ground-truth lines."""
    scene = _Scene(background, fonts or _Fonts(FONT_SEARCH_DIRS), rng)
    scene.document(int(rng.integers(12, 17)), int(rng.integers(3, 5)))
    for _ in range(2):
        scene.sign(int(rng.integers(22, 49)))
    for _ in range(2):
        scene.label(int(rng.integers(12, 21)))
    for _ in range(3):
        scene.overlay(int(rng.integers(14, 41)))
    return np.asarray(scene.image).copy(), scene.lines


def _crop(image: np.ndarray, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    h, w = image.shape[:2]
    scale = max(width / w, height / h)
    if scale > 1:
        resized = Image.fromarray(image).resize((max(width, round(w * scale)), max(height, round(h * scale))), Image.LANCZOS)
        image = np.asarray(resized)
        h, w = image.shape[:2]
    x = int(rng.integers(0, w - width + 1))
    y = int(rng.integers(0, h - height + 1))
    return np.ascontiguousarray(image[y : y + height, x : x + width])


def _provenance(background_dir: Path) -> dict[str, Any]:
    """Manifest entries of the background folder (its parent's manifest.json), by file name."""
    manifest = read_manifest(background_dir.parent)
    if manifest is None:
        return {}
    return {Path(entry.path).name: entry for entry in manifest.entries.values()
            if Path(entry.path).parent.name == background_dir.name}


def generate_text_scenes(
    background_dir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    count: int = 24,
    width: int = 768,
    height: int = 512,
    seed: int = 0,
    force: bool = False,
    font_dirs: Sequence[Path] = FONT_SEARCH_DIRS,
) -> SceneReport:
    """Write ``count`` text scenes (PNG + ground-truth JSON) and ``scenes.json`` into ``out``.

    Backgrounds are distinct photos of ``background_dir`` drawn by ``seed`` (those whose manifest
    licence is "not stated" are left out), each cropped (upscaled first if smaller) to
    ``width`` x ``height``. Refuses to overwrite existing scene files unless ``force``.
    """
    if count < 1:
        raise ImgcompError(f"--count must be at least 1, got {count}")
    if width < 128 or height < 96:
        raise ImgcompError(f"scenes must be at least 128x96 pixels, got {width}x{height}")
    fonts = _Fonts(font_dirs)
    background_dir, out = Path(background_dir), Path(out)
    provenance = _provenance(background_dir)
    candidates = [
        path for path in list_images(background_dir)
        if not (path.name in provenance and provenance[path.name].license.startswith("not stated"))
    ]
    if len(candidates) < count:
        raise ImgcompError(f"{background_dir}: {len(candidates)} usable photos, {count} scenes need as many")
    names = [f"text-{index:02d}" for index in range(count)]
    targets = [out / f"{name}{suffix}" for name in names for suffix in (".png", ".json")] + [out / "scenes.json"]
    check_writable(targets, force)

    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(candidates), size=count, replace=False)
    images, total_lines, total_words = [], 0, 0
    for name, index in zip(names, chosen):
        source = candidates[int(index)]
        pixels, lines = render_scene(_crop(load_image(source), width, height, rng), rng, fonts)
        entry = provenance.get(source.name)
        truth = {
            "format": SCENE_FORMAT, "image": f"{name}.png", "width": width, "height": height,
            "background": {
                "file": source.name, "sha256": file_sha256(source),
                "package": entry.package if entry else None, "license": entry.license if entry else None,
                "original_path": entry.original_path if entry else None,
            },
            "lines": lines,
        }
        png = out / f"{name}.png"
        image = Image.fromarray(pixels, "RGB")
        write_atomic(png, lambda handle: image.save(handle, format="PNG"))
        _write_json(out / f"{name}.json", truth)
        images.append(png)
        total_lines += len(lines)
        total_words += sum(len(line["words"]) for line in lines)
    _write_json(out / "scenes.json", {
        "format": "imgcomp-text-scenes/1", "generator_version": GENERATOR_VERSION, "seed": seed,
        "count": count, "width": width, "height": height, "backgrounds": str(background_dir),
        "font_package": FONT_PACKAGE,
        "fonts": {name: {"file": path.name, "sha256": file_sha256(path)} for name, path in fonts.paths.items()},
        "pillow": Image.__version__, "freetype": ImageFont.core.freetype2_version,
        "lines": total_lines, "words": total_words,
    })
    return SceneReport(out, images, total_lines, total_words)


def _write_json(path: Path, document: dict[str, Any]) -> None:
    data = (json.dumps(document, indent=1, ensure_ascii=False) + "\n").encode("utf-8")
    write_atomic(path, lambda handle: handle.write(data))


def load_ground_truth(image_path: str | os.PathLike) -> list[dict[str, Any]]:
    """The ground-truth lines of an image: ``[{"text": str, "box": [x0, y0, x1, y1]}, ...]`` from
    the ``.json`` beside it (same name). A missing or malformed file raises :class:`ImgcompError`."""
    path = Path(image_path).with_suffix(".json")
    if not path.is_file():
        raise ImgcompError(f"{image_path}: no ground truth {path.name} beside it (see imgcomp data text-scenes)")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        lines = [{"text": str(item["text"]), "box": [float(v) for v in item["box"]]} for item in document["lines"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise ImgcompError(f"{path}: unreadable ground truth ({exc})") from None
    for line in lines:
        box = line["box"]
        if len(box) != 4 or not (box[2] > box[0] and box[3] > box[1]):
            raise ImgcompError(f"{path}: box {line['box']} of {line['text']!r} is not [x0, y0, x1, y1]")
    return lines
