"""Y. Patel, S. Appalaraju, R. Manmatha: "Deep Perceptual Compression", arXiv:1907.08310 (2019).

Patel et al. train the context-model codec of Mentzer et al. 2018 with another distortion,
``D = DPL + lambda (1 - MS-SSIM)`` (sec. 3.2, eq. 1: DPL is LPIPS), and a decoder whose
up-convolutions have kernel 2 and stride 2 (sec. 3.1, against checkerboard artefacts). The network,
quantizer, context model and streams are Mentzer et al.'s: a model of this system is a
``mentzer2018`` network (its config's ``architecture``), its files carry the ``mentzer2018`` system
id and stream, and it ships as ``weights/patel2019/<model>/``. What is this system's own:
:mod:`.objective` (the distortion's settings) and :mod:`.recipes` (how the shipped model was
trained). Everything else is reached through the registry (:func:`imgcomp.systems.base.get_system`),
never by importing :mod:`imgcomp.systems.mentzer2018`.
"""

from __future__ import annotations

from typing import Any

from imgcomp.systems.base import get_system

CODING_SYSTEM = "mentzer2018"  # whose networks, streams and training steps this system's models use


def _coding() -> Any:
    return get_system(CODING_SYSTEM)


class Patel2019:
    """The :class:`~imgcomp.systems.base.System` of Patel et al. 2019: Mentzer et al.'s coding,
    this paper's objective and recipes."""

    name = "patel2019"
    coding_system = CODING_SYSTEM  # its files carry mentzer2018's system id (see system_for_id)
    citation = (
        "Y. Patel, S. Appalaraju, R. Manmatha. Deep Perceptual Compression. arXiv:1907.08310, 2019."
    )

    @property
    def stream_version(self) -> int:
        return _coding().stream_version

    @property
    def readable_stream_versions(self) -> tuple[int, ...]:
        return _coding().readable_stream_versions

    @property
    def config_class(self) -> type:
        return _coding().config_class

    @property
    def supports_refinement(self) -> bool:
        return _coding().supports_refinement

    def build(self, config: Any) -> Any:
        return _coding().build(config)

    def qualities(self, loaded: Any) -> int:
        return _coding().qualities(loaded)

    def encode(self, loaded, pixels, quality, *, refine_steps=0, objective_lowpass=None, stream_version=None):
        return _coding().encode(
            loaded, pixels, quality, refine_steps=refine_steps, objective_lowpass=objective_lowpass,
            stream_version=stream_version,
        )

    def model_tag(self, weights_sha256: str, folder: Any, stream_version: int) -> bytes:
        return _coding().model_tag(weights_sha256, folder, stream_version)

    def automatic_lowpass(self, loaded: Any) -> Any:
        return _coding().automatic_lowpass(loaded)

    def lowpass_version(self, stream_version: int) -> int:
        return _coding().lowpass_version(stream_version)

    def decode(self, loaded, payload, width, height, quality, stream_version):
        return _coding().decode(loaded, payload, width, height, quality, stream_version)

    def visualize(self, image, model, out, quality=None, force=False) -> list:
        return _coding().visualize(image, model, out, quality=quality, force=force)

    def benchmarks(self, image_path: str, loaded: Any) -> dict:
        return _coding().benchmarks(image_path, loaded)

    def training_throughput(self, preset: str, steps: int, batch_size: int, crop: int) -> dict:
        return _coding().training_throughput(preset, steps, batch_size, crop)

    def training(self) -> Any:
        """Mentzer et al.'s training module (``TrainConfig``, ``train``): the same steps, this
        system's distortion set through ``TrainConfig.criterion`` by :mod:`.recipes`."""
        return _coding().training()

    def recipes(self) -> Any:
        """This system's recipes module: ``RECIPES`` and ``build_config``."""
        from imgcomp.systems.patel2019 import recipes

        return recipes


SYSTEM = Patel2019()

__all__ = ["CODING_SYSTEM", "SYSTEM", "Patel2019"]
