"""Mentzer, Agustsson, Tschannen, Timofte, Van Gool: "Conditional Probability Models for Deep Image
Compression", CVPR 2018 (arXiv:1801.04260).

Everything specific to this system: :mod:`.config` (sizes, presets), :mod:`.model` (E, D, the
importance map, the learned-center quantizer Q and the 3-D context model P, with
:mod:`.layers`, :mod:`.importance_map`, :mod:`.quantizer`, :mod:`.context_model`),
:mod:`.wavefront` (fast causal coding with P), :mod:`.stream` (image <-> payload),
:mod:`.refine` (encoder-side latent refinement), :mod:`.objective` (eqs. 13, 19-21),
:mod:`.training` (the training steps: two optimisers, E/D/Q and P), :mod:`.recipes`,
:mod:`.visualize` and :mod:`.bench`. The runtime modules import no training code.
"""

from __future__ import annotations

from imgcomp.systems.mentzer2018.config import ARCHITECTURE, CodecConfig


class Mentzer2018:
    """The :class:`~imgcomp.systems.base.System` of Mentzer et al. 2018."""

    name = ARCHITECTURE
    stream_version = 2  # P in exact integer arithmetic (1 for a model folder without its integer P)
    readable_stream_versions = (1, 2)
    torch_free_stream_versions = (2,)  # decoded by numpy alone (.decoder_numpy); 1 needs torch's float P
    citation = (
        "F. Mentzer, E. Agustsson, M. Tschannen, R. Timofte, L. Van Gool. Conditional Probability "
        "Models for Deep Image Compression. CVPR 2018."
    )
    config_class = CodecConfig
    supports_refinement = True

    def build(self, config: CodecConfig):
        from imgcomp.systems.mentzer2018.model import ConditionalProbabilityCodec

        return ConditionalProbabilityCodec(config)

    def qualities(self, loaded) -> int:
        return loaded.config.importance_heads

    def encode(self, loaded, pixels, quality, *, refine_steps=0, objective_lowpass=None, stream_version=None):
        from imgcomp.systems.mentzer2018 import stream

        return stream.encode(
            loaded, pixels, quality, refine_steps=refine_steps, objective_lowpass=objective_lowpass,
            stream_version=stream_version,
        )

    def model_tag(self, weights_sha256, folder, stream_version) -> bytes:
        """Stream version 1: the weights' SHA-256; 2: SHA-256(weights SHA-256 || integer P's params SHA-256)."""
        from imgcomp.systems.mentzer2018.tags import model_tag

        return model_tag(weights_sha256, folder, stream_version)

    def automatic_lowpass(self, loaded) -> str:
        """The per-image search."""
        from imgcomp.postfilter.lowpass import AUTO

        return AUTO

    def lowpass_version(self, stream_version) -> int:
        """Stream version 2 files code the low-pass section exactly too (coding version 2)."""
        return 2 if stream_version >= 2 else 1

    def load_torch_free(self, folder, config, metadata, weights_sha256, state):
        """The decoding model without torch (:class:`.decoder_numpy.NumpyModel`) from numpy weights."""
        from imgcomp.systems.mentzer2018 import decoder_numpy

        return decoder_numpy.load(folder, config, metadata, weights_sha256, state)

    def decode(self, loaded, payload, width, height, quality, stream_version):
        """Decode with the torch model or, for a :class:`.decoder_numpy.NumpyModel`, without torch."""
        from imgcomp.systems.mentzer2018 import decoder_numpy

        if isinstance(loaded, decoder_numpy.NumpyModel):
            return decoder_numpy.decode(loaded, payload, width, height, quality, stream_version)
        from imgcomp.systems.mentzer2018 import stream

        return stream.decode(loaded, payload, width, height, quality, stream_version)

    def visualize(self, image, model, out, quality=None, force=False) -> list:
        """Importance map and latent channels as PNGs (Fig. 6 of the paper)."""
        from imgcomp.systems.mentzer2018.visualize import visualize

        return visualize(image, model, out, quality=quality, force=force)

    def benchmarks(self, image_path: str, loaded) -> dict:
        """System-specific speed figures for ``imgcomp bench codec``."""
        from imgcomp.systems.mentzer2018.bench import naive_decode_seconds

        return {"naive_one_symbol_at_a_time": naive_decode_seconds(image_path, loaded)}

    def training_throughput(self, preset: str, steps: int, batch_size: int, crop: int) -> dict:
        from imgcomp.systems.mentzer2018.bench import training_throughput

        return training_throughput(preset, steps, batch_size, crop)

    def training(self):
        """The training module: ``TrainConfig``, ``train``, ``CONFIG_FILE`` (imports training code)."""
        from imgcomp.systems.mentzer2018 import training

        return training

    def recipes(self):
        """The recipes module: ``RECIPES`` and ``build_config``."""
        from imgcomp.systems.mentzer2018 import recipes

        return recipes


SYSTEM = Mentzer2018()

__all__ = ["SYSTEM", "CodecConfig", "Mentzer2018"]
