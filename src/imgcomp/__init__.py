"""imgcomp: learned lossy image compression, from training to real files.

Implements Mentzer et al. (CVPR 2018), Patel et al. (Deep Perceptual Compression) and
Rippel & Bourdev (ICML 2017) and measures them against the classical codecs.

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
    if name in ("compress", "decompress", "encode_image"):
        from imgcomp import codec

        return getattr(codec, name)
    raise AttributeError(f"module 'imgcomp' has no attribute {name!r}")

__all__ = ["ImgcompError", "__version__", "compress", "decompress", "encode_image"]
