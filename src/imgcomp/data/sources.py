"""Which photographs ``imgcomp data prepare`` takes, file by file.

Explicit allowlists by path inside each package make the data set reproducible and keep out what
is not a natural photograph (logos, charts, chessboards, text, renders, paintings, vector art).
Each list was made by looking at every image the package ships; the package versions looked at
are recorded as ``reviewed_version`` (a different version is used, with a warning, if that is what
apt offers: the manifest records the version actually used).

Training (51 photographs):

* ``plasma-workspace-wallpapers``: the 11 photographic 2560x1600 JPEGs (each wallpaper's other
  sizes are symlinks to it). Left out: Autumn (a digital painting) and all vector/3-D art.
* ``mate-backgrounds``: the 12 photos of ``nature/``.
* ``opencv-doc``: 20 natural photos of ``examples/data`` and 2 more from other example folders
  (``examples/data`` alone gives 49 in all, under the 50 wanted). Left out: logos, cartoons, renders
  (Suzanne, ml.png), shapes and synthetic pictures (pic1-6, gradient, cards), calibration
  chessboards (left/right*), text and sudoku, the painting (starry_night), the forged
  ``ela_modified``, synthetic motion blur, and near-duplicates of included photos (aloeR,
  leuvenB, graf3, rubberwhale2), grayscale video frames (basketball1/2), photos dominated by
  text (the scene-text examples), and ``reg/home.png`` (its first row is corrupt).
* ``scikit-image``: its bundled natural photos (no network: they ship in the wheel).

Validation: the 11 photographs of ``lxqt-themes`` (7 PNG, 4 JPEG); its logos, origami and
abstract/vector wallpapers are left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Split = Literal["train", "val", "val-textured"]


@dataclass(frozen=True)
class ImageGroup:
    """Images taken from one package.

    ``files`` maps the path inside the package (its installed path; for a Python package, the
    path under ``site-packages``) to the output file name; a path ``ARCHIVE!MEMBER`` names a
    member of a zip archive (a game's ``.pk3``) inside the package. Licences come from
    ``licenses`` when given (path -> (licence, where it is documented)), else ``license_file``
    inside the package, else the package's DEP-5 copyright file with installed paths mapped by
    ``upstream_prefix``; ``license`` is the package-wide licence used where that lookup finds
    none (a copyright file that is not DEP-5, or no matching paragraph).

    ``recipe`` overrides the split's processing recipe (see :mod:`.prepare`); ``min_texture``
    drops images whose texture score (mean luma gradient of the output, see
    :func:`imgcomp.data.prepare.texture_score`) is below it: the textured validation set uses it
    so that no smooth picture slips in.
    """

    package: str
    split: Split
    files: Mapping[str, str]
    reviewed_version: str | None = None
    upstream_prefix: tuple[str, str] = ("", "")
    license_file: str | None = None
    licenses: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    license: tuple[str, str] | None = None
    recipe: str | None = None
    min_texture: float = 0.0


def _slug(file_name: str) -> str:
    """Output stem: lower case, no suffix, '-' for '_' ("chicky_512.png" -> "chicky-512")."""
    stem = file_name.rsplit(".", 1)[0] if "." in file_name else file_name
    return stem.lower().replace("_", "-")


_PLASMA_NAMES = (
    "BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow", "FallenLeaf",
    "Grey", "Kite", "OneStandsOut", "Path", "summer_1am",
)  # fmt: skip

# Each wallpaper's real file; its other sizes are symlinks to it.
_PLASMA_PATH = "usr/share/wallpapers/{}/contents/images/2560x1600.jpg"

_MATE_NAMES = (
    "Aqua", "Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow", "LadyBird", "RainDrops",
    "Storm", "TwoWings", "Wood", "YellowFlower",
)  # fmt: skip

_OPENCV_DATA_PHOTOS = (
    "aero1.jpg", "aero3.jpg", "aloeL.jpg", "apple.jpg", "baboon.jpg", "board.jpg",
    "building.jpg", "butterfly.jpg", "chicky_512.png", "ela_original.jpg", "fruits.jpg",
    "graf1.png", "home.jpg", "leuvenA.jpg", "messi5.jpg", "orange.jpg", "rubberwhale1.png",
    "smarties.png", "squirrel_cls.jpg", "stuff.jpg",
)  # fmt: skip

_OPENCV_OTHER_PHOTOS = {
    "alphamat/input_images/plant.jpg": "opencv-alphamat-plant.png",
    "dnn_superres/butterfly.png": "opencv-superres-butterfly.png",
}

_OPENCV_EXAMPLES = "usr/share/doc/opencv-doc/examples/"

_SKIMAGE_DOC = "skimage.data.{}() docstring"

TRAIN_SOURCES: tuple[ImageGroup, ...] = (
    ImageGroup(
        package="plasma-workspace-wallpapers",
        split="train",
        files={_PLASMA_PATH.format(name): f"plasma-{_slug(name)}.png" for name in _PLASMA_NAMES},
        reviewed_version="4:5.27.5-2",
        upstream_prefix=("usr/share/", ""),
    ),
    ImageGroup(
        package="mate-backgrounds",
        split="train",
        files={
            f"usr/share/backgrounds/mate/nature/{name}.jpg": f"mate-{_slug(name)}.png"
            for name in _MATE_NAMES
        },
        reviewed_version="1.26.0-1",
        upstream_prefix=("usr/share/backgrounds/mate/", ""),
    ),
    ImageGroup(
        package="opencv-doc",
        split="train",
        files={
            **{
                f"{_OPENCV_EXAMPLES}data/{name}": f"opencv-{_slug(name)}.png"
                for name in _OPENCV_DATA_PHOTOS
            },
            **{_OPENCV_EXAMPLES + path: out for path, out in _OPENCV_OTHER_PHOTOS.items()},
        },
        reviewed_version="4.6.0+dfsg-12",
        upstream_prefix=(_OPENCV_EXAMPLES, "samples/"),
    ),
    ImageGroup(
        package="scikit-image",
        split="train",
        files={
            "skimage/data/astronaut.png": "skimage-astronaut.png",
            "skimage/data/chelsea.png": "skimage-chelsea.png",
            "skimage/data/coffee.png": "skimage-coffee.png",
            "skimage/data/motorcycle_left.png": "skimage-motorcycle-left.png",
            "skimage/data/motorcycle_right.png": "skimage-motorcycle-right.png",
            "skimage/data/rocket.jpg": "skimage-rocket.png",
        },
        reviewed_version="0.26.0",
        # The skimage/data/README.txt of 0.26 names no licences; each image's docstring does.
        licenses={
            "skimage/data/astronaut.png": (
                "public-domain (NASA)",
                _SKIMAGE_DOC.format("astronaut"),
            ),
            "skimage/data/chelsea.png": ("CC0-1.0", _SKIMAGE_DOC.format("chelsea")),
            "skimage/data/coffee.png": ("CC0-1.0", _SKIMAGE_DOC.format("coffee")),
            "skimage/data/motorcycle_left.png": (
                "not stated (Middlebury 2014 stereo data set)",
                _SKIMAGE_DOC.format("stereo_motorcycle"),
            ),
            "skimage/data/motorcycle_right.png": (
                "not stated (Middlebury 2014 stereo data set)",
                _SKIMAGE_DOC.format("stereo_motorcycle"),
            ),
            "skimage/data/rocket.jpg": ("public-domain (SpaceX)", _SKIMAGE_DOC.format("rocket")),
        },
    ),
)

_LXQT_WALLPAPERS = "usr/share/lxqt/wallpapers/"

_LXQT_PHOTOS = (
    "Butterfly-Kenneth-Wimer.jpg", "Valendas.png", "after-the-rain.jpg", "appleflower.png",
    "beam.png", "butterfly.png", "cloud.png", "drop.png", "flowers.png", "fog.jpg",
    "this-is-not-windows.jpg",
)  # fmt: skip

VAL_SOURCES: tuple[ImageGroup, ...] = (
    ImageGroup(
        package="lxqt-themes",
        split="val",
        files={_LXQT_WALLPAPERS + name: f"lxqt-{_slug(name)}.png" for name in _LXQT_PHOTOS},
        reviewed_version="1.2.0-1",
        upstream_prefix=(_LXQT_WALLPAPERS, "wallpapers/"),
        license_file=_LXQT_WALLPAPERS + "License",
    ),
)

POOL_SOURCES: tuple[ImageGroup, ...] = ()

VAL_TEXTURED_SOURCES: tuple[ImageGroup, ...] = ()
