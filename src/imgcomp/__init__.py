"""imgcomp: learned lossy image compression, from training to real files.

Implements Mentzer et al. (CVPR 2018), Patel et al. (Deep Perceptual Compression) and
Rippel & Bourdev (ICML 2017) and measures them against the classical codecs.
"""

from imgcomp.errors import ImgcompError

__version__ = "0.1.0"

__all__ = ["ImgcompError", "__version__"]
