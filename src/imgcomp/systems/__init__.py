"""Published systems, one package each, found by name through :mod:`imgcomp.systems.base`.

* :mod:`~imgcomp.systems.mentzer2018`: Mentzer et al., "Conditional Probability Models for Deep
  Image Compression", CVPR 2018 (implemented).
* ``patel2019`` (Patel et al., Deep Perceptual Compression) and ``rippel2017`` (Rippel & Bourdev,
  Real-Time Adaptive Image Compression, ICML 2017) have ids reserved and are not implemented yet.
"""

from imgcomp.systems.base import (
    SYSTEM_IDS,
    Decoded,
    Encoded,
    System,
    available_systems,
    config_from_dict,
    create_model,
    get_system,
    system_for_id,
    system_id,
)

__all__ = [
    "SYSTEM_IDS", "Decoded", "Encoded", "System", "available_systems", "config_from_dict",
    "create_model", "get_system", "system_for_id", "system_id",
]
