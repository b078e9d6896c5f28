"""Configuration of a Mentzer et al. (2018) model: the architecture's sizes and named presets."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from imgcomp.errors import ImgcompError
from imgcomp.systems.base import config_fields_from_dict

ARCHITECTURE = "mentzer2018"
DOWNSAMPLING = 8  # three stride-2 convolutions


@dataclass
class CodecConfig:
    """Everything needed to rebuild a model; stored as JSON beside the weights."""

    architecture: str = ARCHITECTURE
    channels: int = 128  # n in Fig. 2
    residual_groups: int = 5
    blocks_per_group: int = 3
    batch_norm: bool = True
    latent_channels: int = 32  # K
    num_centers: int = 6  # L
    importance_heads: int = 1
    context_channels: int = 24
    decoder_kernel: int = 5  # 2 for Patel et al.'s checkerboard-free upsampling
    # P codes positions the importance mask switched off as one extra symbol (index L, value
    # Q(0)) instead of as Q(0) itself, so it sees where the mask ends (see ``context_symbols``).
    mask_symbol: bool = False
    # Importance map averaged over importance_pool x importance_pool latent positions (1: the
    # paper's per-position map). Coarser maps have fewer mask edges for P to code (eq. 13 vs 19).
    importance_pool: int = 1
    # Fixed input normalisation (per RGB channel, on the 0-255 scale), set from training data.
    input_mean: list[float] = field(default_factory=lambda: [120.0, 115.0, 105.0])
    input_std: list[float] = field(default_factory=lambda: [65.0, 63.0, 66.0])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CodecConfig":
        return config_fields_from_dict(cls, data)


PRESETS: dict[str, CodecConfig] = {
    # The published body: 5 groups x 3 residual blocks, n = 128 (1.4 s/step on a 2-core EPYC: `imgcomp bench train`).
    "paper": CodecConfig(),
    # Small enough to train on 2 CPU cores: n = 64, 4 residual blocks.
    "cpu": CodecConfig(channels=64, residual_groups=1, blocks_per_group=4),
    # Between the two, for the GPU job (recipe gpu-multirate): n = 96, 4 residual blocks; its
    # decoder stays within the 0.5 s decode budget of a 768x512 image on 2 CPU cores.
    "mid": CodecConfig(channels=96, residual_groups=1, blocks_per_group=4),
    # Tiny, for tests only.
    "tiny": CodecConfig(
        channels=8, residual_groups=1, blocks_per_group=1, latent_channels=4, context_channels=4
    ),
}


def preset(name: str, **overrides: Any) -> CodecConfig:
    """A copy of a named preset with some fields changed."""
    if name not in PRESETS:
        raise ImgcompError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    data = PRESETS[name].to_dict()
    data.update({k: v for k, v in overrides.items() if v is not None})
    return CodecConfig.from_dict(data)
