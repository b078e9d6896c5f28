"""What a published system provides, and the registry through which everything else finds it.

A system is one package under :mod:`imgcomp.systems` (``mentzer2018`` today) that owns all that is
specific to one paper: its config class, networks, probability model, stream coding, objective,
recipes and visualisation. Shared code (the API, the container, codecs, eval, training, CLI) never
imports a system package directly: it asks this registry, by name (``"mentzer2018"``), by the id
a file carries (:data:`SYSTEM_IDS`) or by the ``architecture`` field of a model's config.

Runtime and training stay apart: a system's ``encode``/``decode`` must not import
:mod:`imgcomp.training`; its training hooks (:meth:`System.training`) are imported only when
called.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np

from imgcomp.errors import ImgcompError

# The frozen table of system ids written into .icz files (container v4). Never renumber: a
# file's id is how a decoder finds its system. 0 is reserved (invalid).
SYSTEM_IDS: dict[str, int] = {
    "mentzer2018": 1,  # Mentzer et al., CVPR 2018: conditional probability models
    "patel2019": 2,  # Patel et al., Deep Perceptual Compression: reserved; its models write mentzer2018 files (1)
    "rippel2017": 3,  # Rippel & Bourdev, ICML 2017: real-time adaptive compression (planned)
}


@dataclass
class Encoded:
    """A system's share of a file: its payload and what the shared layers need after it."""

    payload: bytes
    estimated_bits: float  # ideal coding cost of the payload (sum -log2 P)
    # The decoder's output for this payload, (H, W, 3) uint8: computed only when asked for (the
    # low-pass layer and keep_reconstruction need it).
    reconstruct: Callable[[], np.ndarray] = field(repr=False)
    stream_version: int | None = None  # the stream version the payload is in (None: the system's default)


@dataclass
class Decoded:
    pixels: np.ndarray  # (H, W, 3) uint8
    # The range decoder after the system's symbols: container v3 files continue it with the
    # low-pass layer. None for a system whose payload is not one range-coded stream.
    decoder: Any = None


@runtime_checkable
class System(Protocol):
    """The surface a system package exposes as its module-level ``SYSTEM``."""

    name: str  # registry name and the folder of its shipped weights (weights/<name>/<model>/)
    stream_version: int  # version of this system's own payload format, written into files
    readable_stream_versions: tuple[int, ...]
    citation: str
    config_class: type  # from_dict / to_dict; the config's ``architecture`` field is ``name``
    supports_refinement: bool  # encode(refine_steps > 0) optimises the latent for the image

    def build(self, config: Any) -> Any:
        """An untrained network (``torch.nn.Module``) for ``config``."""

    def qualities(self, loaded: Any) -> int:
        """How many quality levels a loaded model offers (1..n)."""

    def encode(
        self, loaded: Any, pixels: np.ndarray, quality: int, *, refine_steps: int = 0, objective_lowpass: Any = None,
        stream_version: int | None = None,
    ) -> Encoded:
        """Code an (H, W, 3) uint8 image at ``quality`` (in ``stream_version``, default: the system's choice
        for this model, reported in :attr:`Encoded.stream_version`)."""

    def model_tag(self, weights_sha256: str, folder: Any, stream_version: int) -> bytes:
        """The container's model tag for files of ``stream_version`` made with the model whose
        weights have ``weights_sha256`` and whose folder is ``folder`` (it must cover every model
        file the coded bytes depend on). Stream versions of imgcomp 0.2-0.5: the weights' SHA-256."""

    def lowpass_version(self, stream_version: int) -> int:
        """The coding of the low-pass section in files of ``stream_version``
        (:mod:`imgcomp.postfilter.lowpass`: 1 float Laplace rows, 2 exact integer frequencies)."""

    def automatic_lowpass(self, loaded: Any) -> Any:
        """What ``lowpass="auto"`` means for this model: ``"auto"`` (the per-image rate-distortion
        search of :func:`imgcomp.postfilter.lowpass.choose_lowpass`) or fixed
        :class:`~imgcomp.postfilter.lowpass.LowpassSettings` (e.g. those the model was trained for)."""

    def decode(self, loaded: Any, payload: bytes, width: int, height: int, quality: int, stream_version: int) -> Decoded:
        """Invert :meth:`encode`."""

    def training(self) -> Any:
        """The system's training module (``TrainConfig``, ``train``, ``CONFIG_FILE``); imports training code."""

    def recipes(self) -> Any:
        """The system's recipes module (``RECIPES``, ``build_config``)."""

    def visualize(self, image: Any, model: Any, out: Any, quality: int | None = None, force: bool = False) -> list:
        """PNGs of what the model's latent holds."""

    def benchmarks(self, image_path: str, loaded: Any) -> dict:
        """System-specific speed figures for ``imgcomp bench codec``."""

    def training_throughput(self, preset: str, steps: int, batch_size: int, crop: int) -> dict:
        """Seconds per training step of a preset."""


def config_fields_from_dict(cls: type, data: dict[str, Any]) -> Any:
    """``cls(**data)`` for a system's config dataclass; fields it does not know are a clear error
    (every config class's ``from_dict``)."""
    unknown = set(data) - {f.name for f in dataclass_fields(cls)}
    if unknown:
        raise ImgcompError(f"model config has unknown fields: {', '.join(sorted(unknown))}")
    return cls(**data)


def system_id(name: str) -> int:
    try:
        return SYSTEM_IDS[name]
    except KeyError:
        raise ImgcompError(f"system {name!r} has no id in the container's table") from None


def available_systems() -> list[str]:
    """Systems implemented in this installation (the table also reserves ids for planned ones)."""
    return list(_implemented())


@functools.lru_cache(maxsize=1)
def _implemented() -> tuple[str, ...]:
    return tuple(name for name in SYSTEM_IDS if importlib.util.find_spec(f"imgcomp.systems.{name}") is not None)


def get_system(name: str) -> System:
    """The system registered as ``name`` (its package is imported on first use)."""
    if name not in available_systems():
        known = ", ".join(available_systems())
        raise ImgcompError(f"unknown system {name!r}; implemented: {known}")
    module = importlib.import_module(f"imgcomp.systems.{name}")
    return module.SYSTEM


def system_for_id(number: int) -> System:
    """The system of a file's system id."""
    for name, value in SYSTEM_IDS.items():
        if value == number:
            if name not in available_systems():
                raise ImgcompError(f"file was made by system {name!r}, which this imgcomp does not implement")
            system = get_system(name)
            coding = getattr(system, "coding_system", name)
            if coding != name:  # a system whose models are another's networks writes that one's id
                raise ImgcompError(f"system id {number} ({name}) is never written: its files carry {coding!r}'s id")
            return system
    raise ImgcompError(f"unknown system id {number} in file")


def config_from_dict(data: dict[str, Any]) -> Any:
    """A model config from its JSON form; its ``architecture`` field names the system."""
    if not isinstance(data, dict) or not isinstance(data.get("architecture"), str):
        raise ImgcompError("model config lacks its architecture (the system's name)")
    return get_system(data["architecture"]).config_class.from_dict(data)


def create_model(config: Any) -> Any:
    """An untrained network of ``config``'s system."""
    return get_system(config.architecture).build(config)
