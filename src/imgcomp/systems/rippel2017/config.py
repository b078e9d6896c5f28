"""Configuration of a Rippel & Bourdev (2017) model: the architecture's sizes and named presets."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Optional

from imgcomp.errors import ImgcompError
from imgcomp.systems.base import config_fields_from_dict

ARCHITECTURE = "rippel2017"


@dataclass
class RippelConfig:
    """Everything needed to rebuild a model; stored as JSON beside the weights.

    Sec. 3.1: ``scales`` (M) pyramid levels, level m at 1/2^m of the image; the interscale
    alignment brings every level to level ``target_scale`` (the latent is at 1/2^target_scale).
    Sec. 3.2.1: features in [-1, 1] quantised to ``bits`` (B) bits, bins of 2^-(B-1)."""

    architecture: str = ARCHITECTURE
    scales: int = 6  # M
    scale_channels: list[int] = field(default_factory=lambda: [16, 32, 48, 64, 96, 96])
    extractor_layers: list[int] = field(default_factory=lambda: [1, 1, 1, 1, 1, 1])  # conv 3x3 + lrelu per level
    target_scale: int = 4  # latent at 1/16 of the image
    align_channels: int = 96
    align_layers: int = 2  # convs after the aligned levels are summed
    # The decoder's own extractor depths (None: the encoder's) and the finest level that gets a
    # direct branch from the latent (0: every level, the exact mirror; finer levels are reached
    # through the learned upsamplers only).
    decoder_extractor_layers: Optional[list[int]] = None
    decoder_first_branch: int = 0
    latent_channels: int = 32  # C
    bits: int = 6  # B
    qualities: int = 5  # one learned quantisation step per quality and channel (multi-rate)
    channel_groups: int = 4  # channels of one bitplane coded in this many groups (bit contexts)
    # [block, step] of the low-pass layer (imgcomp.postfilter.lowpass) the model was trained for:
    # encoders code with it by default instead of searching per image. None: trained without it.
    lowpass: Optional[list[int]] = None
    input_mean: list[float] = field(default_factory=lambda: [120.0, 115.0, 105.0])
    input_std: list[float] = field(default_factory=lambda: [65.0, 63.0, 66.0])

    def __post_init__(self) -> None:
        if self.scales < 2 or len(self.scale_channels) != self.scales or len(self.extractor_layers) != self.scales:
            raise ImgcompError("rippel2017 config: scales needs one channel count and extractor depth per level")
        if self.decoder_extractor_layers is not None and len(self.decoder_extractor_layers) != self.scales:
            raise ImgcompError("rippel2017 config: decoder_extractor_layers needs one depth per level")
        if self.lowpass is not None and (len(self.lowpass) != 2 or not all(isinstance(v, int) for v in self.lowpass)):
            raise ImgcompError("rippel2017 config: lowpass is [block, step] or null")
        if not 0 <= self.decoder_first_branch < self.scales:
            raise ImgcompError("rippel2017 config: decoder_first_branch must be a pyramid level")
        if not 0 <= self.target_scale < self.scales:
            raise ImgcompError("rippel2017 config: target_scale must be a pyramid level")
        if not 2 <= self.bits <= 8 or self.qualities < 1 or not 1 <= self.channel_groups <= self.latent_channels:
            raise ImgcompError("rippel2017 config: bits in 2..8, qualities >= 1, 1 <= channel_groups <= latent_channels")

    @property
    def pad_multiple(self) -> int:
        """Images are padded to a multiple of the coarsest level's stride."""
        return 2 ** (self.scales - 1)

    @property
    def decoder_layers(self) -> list[int]:
        """The decoder's extractor depth per level."""
        return list(self.extractor_layers if self.decoder_extractor_layers is None else self.decoder_extractor_layers)

    @property
    def latent_stride(self) -> int:
        return 2**self.target_scale

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RippelConfig":
        return config_fields_from_dict(cls, data)


PRESETS: dict[str, RippelConfig] = {
    # Closer to the paper's sizes (M = 6, wider levels): for a GPU.
    "paper": RippelConfig(
        scale_channels=[32, 64, 96, 128, 128, 128], extractor_layers=[2, 2, 2, 2, 2, 2], align_channels=128,
        align_layers=3, latent_channels=64,
    ),
    # Small enough to train on 2 CPU cores: about 1.3 G multiply-adds each to encode and decode
    # 768x512. C = 64 at 1/16: 64 * 6 / 256 = 1.5 bits per pixel in the quantised features, a
    # total-to-target ratio (sec. 3.2.4; the paper: about 4) of 15 at 0.1 bpp, 1.9 at 0.8 bpp.
    "cpu": RippelConfig(
        scale_channels=[8, 16, 24, 48, 64, 64], extractor_layers=[0, 0, 1, 1, 1, 1], align_channels=64,
        align_layers=2, latent_channels=64,
    ),
    # The decoder without its direct branches to the two finest levels (no 16x16 / 8x8 transposed
    # convolutions) and deeper per-level stacks instead: about 2.2 / 2.5 G multiply-adds, decodes
    # faster than cpu. Trained once from scratch (docs/rippel2017.md): worse than cpu at 6000 steps.
    "cpu-d": RippelConfig(
        scale_channels=[8, 16, 32, 64, 96, 96], extractor_layers=[0, 0, 1, 1, 1, 1], align_channels=96,
        align_layers=2, latent_channels=64, decoder_extractor_layers=[0, 1, 2, 3, 2, 1], decoder_first_branch=2,
    ),
    # Tiny, for tests only.
    "tiny": RippelConfig(
        scale_channels=[4, 4, 8, 8, 8, 8], extractor_layers=[0, 1, 0, 1, 0, 1], align_channels=8,
        align_layers=1, latent_channels=4, qualities=2, channel_groups=2,
    ),
}


def preset(name: str, **overrides: Any) -> RippelConfig:
    """A copy of a named preset with some fields changed."""
    if name not in PRESETS:
        raise ImgcompError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    data = PRESETS[name].to_dict()
    data.update({k: v for k, v in overrides.items() if v is not None})
    return RippelConfig.from_dict(data)
