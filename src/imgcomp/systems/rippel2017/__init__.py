"""Rippel, Bourdev: "Real-Time Adaptive Image Compression", ICML 2017 (arXiv:1705.05823).

Everything specific to this system: :mod:`.config` (sizes, presets), :mod:`.model` (pyramidal
encoder with interscale alignment, decoder, per-quality quantiser; sec. 3.1, 3.2.1),
:mod:`.bitplanes` (B-bit quantisation, bitplane decomposition; sec. 3.2.1-3.2.2),
:mod:`.bit_context` (exact, vectorised context coding of the bitplanes; sec. 3.2.3),
:mod:`.acr` (adaptive codelength regularisation and its feedback on alpha; sec. 3.2.4),
:mod:`.stream` (image <-> payload; :mod:`.symbols`, the layout both decoders share),
:mod:`.decoder_numpy` and :mod:`.synthesis_numpy` (decoding without torch), :mod:`.training`,
:mod:`.adversarial` (the multiscale discriminator and its training scheme; sec. 4) and
:mod:`.recipes`. The runtime modules import no training code.
"""

from __future__ import annotations

from imgcomp.systems.rippel2017.config import ARCHITECTURE, RippelConfig


class Rippel2017:
    """The :class:`~imgcomp.systems.base.System` of Rippel & Bourdev 2017."""

    name = ARCHITECTURE
    stream_version = 1
    readable_stream_versions = (1,)
    torch_free_stream_versions = (1,)  # decoded by numpy alone (.decoder_numpy)
    citation = "O. Rippel, L. Bourdev. Real-Time Adaptive Image Compression. ICML 2017."
    config_class = RippelConfig
    supports_refinement = False

    def build(self, config: RippelConfig):
        from imgcomp.systems.rippel2017.model import RippelCodec

        return RippelCodec(config)

    def qualities(self, loaded) -> int:
        return loaded.config.qualities

    def encode(self, loaded, pixels, quality, *, refine_steps=0, objective_lowpass=None, stream_version=None):
        from imgcomp.systems.rippel2017 import stream

        return stream.encode(
            loaded, pixels, quality, refine_steps=refine_steps, objective_lowpass=objective_lowpass,
            stream_version=stream_version,
        )

    def model_tag(self, weights_sha256, folder, stream_version) -> bytes:
        from imgcomp.systems.rippel2017.tags import model_tag

        return model_tag(weights_sha256, folder, stream_version)

    def automatic_lowpass(self, loaded):
        """The settings the model was trained for (``RippelConfig.lowpass``), which spares the
        encoder the per-image search (this system exists to be fast); the search for a model
        trained without the layer."""
        from imgcomp.postfilter.lowpass import AUTO, LowpassSettings

        settings = loaded.config.lowpass
        return AUTO if settings is None else LowpassSettings(*settings)

    def lowpass_version(self, stream_version) -> int:
        """The low-pass section is coded with exact integer frequencies (coding version 2)."""
        return 2

    def load_torch_free(self, folder, config, metadata, weights_sha256, state):
        """The decoding model without torch (:class:`.decoder_numpy.NumpyModel`) from numpy weights."""
        from imgcomp.systems.rippel2017 import decoder_numpy

        return decoder_numpy.load(folder, config, metadata, weights_sha256, state)

    def decode(self, loaded, payload, width, height, quality, stream_version):
        """Decode with the torch model or, for a :class:`.decoder_numpy.NumpyModel`, without torch."""
        from imgcomp.systems.rippel2017 import decoder_numpy

        if isinstance(loaded, decoder_numpy.NumpyModel):
            return decoder_numpy.decode(loaded, payload, width, height, quality, stream_version)
        from imgcomp.systems.rippel2017 import stream

        return stream.decode(loaded, payload, width, height, quality, stream_version)

    def visualize(self, image, model, out, quality=None, force=False) -> list:
        from imgcomp.errors import ImgcompError

        raise ImgcompError("rippel2017 has no visualisation yet")

    def benchmarks(self, image_path: str, loaded, repeats: int = 3) -> dict:
        """System-specific figures for ``imgcomp bench codec``: at the top quality, encode and
        decode split into network (analysis/synthesis, sec. 3.1) and coder (the bitplane context
        coder, sec. 3.2.3) seconds, best of ``repeats``, and the networks' multiply-adds
        (:func:`.bench.measure`)."""
        from imgcomp.io import load_image
        from imgcomp.systems.rippel2017.bench import measure

        split = measure(loaded.model, load_image(image_path), self.qualities(loaded), repeats)
        return {"network_and_coder_split": {**split, "statistic": f"best of {repeats}"}}

    def training_throughput(self, preset: str, steps: int, batch_size: int, crop: int) -> dict:
        from imgcomp.errors import ImgcompError

        raise ImgcompError("rippel2017 has no training benchmark yet (use imgcomp train and read steps_per_s)")

    def training(self):
        """The training module: ``TrainConfig``, ``train``, ``CONFIG_FILE`` (imports training code)."""
        from imgcomp.systems.rippel2017 import training

        return training

    def recipes(self):
        from imgcomp.systems.rippel2017 import recipes

        return recipes


SYSTEM = Rippel2017()

__all__ = ["SYSTEM", "Rippel2017", "RippelConfig"]
