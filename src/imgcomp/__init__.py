"""imgcomp: learned lossy image compression, from training to real files.

Implements Mentzer et al. (CVPR 2018), Patel et al. (Deep Perceptual Compression) and
Rippel & Bourdev (ICML 2017) and measures them against the classical codecs.

>>> import imgcomp
>>> data = imgcomp.compress("photo.png", quality=3)     # bytes of an .icz file
>>> image = imgcomp.decompress(data)                     # a PIL image
"""

from imgcomp import pillow_plugin
from imgcomp.codec import compress, decompress, encode_image
from imgcomp.errors import ImgcompError

__version__ = "0.1.0"

pillow_plugin.register()

__all__ = ["ImgcompError", "__version__", "compress", "decompress", "encode_image"]
