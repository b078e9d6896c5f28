"""imgcomp: learned lossy image compression, from training to real files.

Implements Mentzer et al. (CVPR 2018), with an optional low-pass correction layer, Patel et al.'s
perceptual training of it (Deep Perceptual Compression) and Rippel & Bourdev's real-time codec (ICML
2017), one package each under :mod:`imgcomp.systems`, and measures them against the classical codecs.

>>> import imgcomp
>>> data = imgcomp.compress("photo.png", quality=3)     # bytes of an .icz file
>>> image = imgcomp.decompress(data)                     # a PIL image
"""

from imgcomp import pillow_plugin
from imgcomp.errors import ImgcompError

__version__ = "0.5.0"

pillow_plugin.register()


def __getattr__(name: str):
    """Load the codec (and torch) only when it is first used, so ``import imgcomp`` stays fast."""
    if name in ("compress", "decompress", "encode_image", "decode_image"):
        from imgcomp import api

        return getattr(api, name)
    raise AttributeError(f"module 'imgcomp' has no attribute {name!r}")

__all__ = ["ImgcompError", "__version__", "compress", "decompress", "decode_image", "encode_image"]
