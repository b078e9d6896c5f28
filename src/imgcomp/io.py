"""Image input and output.

Policy (what a user can rely on):

* Accepted containers: anything Pillow decodes (PNG, JPEG, WebP, TIFF, BMP, ...; AVIF and HEIC too).
* Accepted pixel formats: 8-bit RGB; 8-bit grayscale (``L``) is expanded to RGB; palette images are
  converted to RGB; an alpha channel (``RGBA``, ``LA``, palette transparency) is **dropped with a
  warning** (learned and classical codecs here code colour only). Images with several frames use the
  first frame, with a warning.
* Rejected with :class:`~imgcomp.errors.ImgcompError`: 16-bit, float, CMYK, 1-bit and other modes,
  non-image and corrupt files, empty files, decompression bombs beyond Pillow's limit.
* EXIF orientation is applied (files, bytes and PIL images): the pixels are coded as a viewer
  shows them, so a decoded image has the displayed width, height and orientation.
* Colour: the codecs work in sRGB. An RGB image with an embedded ICC profile other than sRGB is
  **converted to sRGB** (LittleCMS via Pillow's ImageCms, perceptual intent) with a warning; an
  unreadable profile is ignored with a warning.
* Metadata is not kept unless asked for (:func:`read_metadata`, ``encode --keep-metadata``): then
  EXIF is kept without its orientation tag (already applied to the pixels), and the ICC profile
  only when it is an sRGB profile: a profile the pixels were converted from no longer describes
  them (the coded pixels are sRGB, which an image without a profile means anyway). XMP is not kept.

Arrays are ``numpy.uint8`` of shape ``(H, W, 3)``.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from imgcomp.errors import ImgcompError

ImageSource = Union[str, os.PathLike, bytes, Image.Image, np.ndarray]

_EXPANDED_MODES = {"RGB", "L", "P", "RGBA", "LA", "PA"}


EXIF_ORIENTATION = 0x0112


def _from_pil(image: Image.Image, name: str) -> np.ndarray:
    if getattr(image, "n_frames", 1) > 1:
        warnings.warn(f"{name}: has {image.n_frames} frames; using the first", stacklevel=3)
        image.seek(0)
    icc_profile = image.info.get("icc_profile")
    try:
        if image.getexif().get(EXIF_ORIENTATION, 1) not in (0, 1):
            image = ImageOps.exif_transpose(image)
    except (OSError, ValueError, SyntaxError, TypeError, KeyError) as exc:
        raise ImgcompError(f"{name}: cannot apply its EXIF orientation ({exc})") from None
    mode = image.mode
    if mode not in _EXPANDED_MODES:
        raise ImgcompError(
            f"{name}: unsupported pixel format {mode!r}; imgcomp reads 8-bit RGB, grayscale "
            "(L), palette (P) and RGBA images"
        )
    has_alpha = mode in {"RGBA", "LA", "PA"} or (mode == "P" and "transparency" in image.info)
    if has_alpha:
        warnings.warn(f"{name}: alpha channel dropped (imgcomp codes colour only)", stacklevel=3)
    try:
        rgb = image.convert("RGBA").convert("RGB") if mode == "P" else image.convert("RGB")
        array = np.array(rgb, dtype=np.uint8)  # a writable copy
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImgcompError(f"{name}: cannot decode image data ({exc})") from None
    if array.ndim != 3 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ImgcompError(f"{name}: empty image")
    if icc_profile and mode != "L":
        array = _to_srgb(array, icc_profile, name)
    return np.ascontiguousarray(array)


def icc_description(icc_profile: bytes) -> str | None:
    """The description of an ICC profile ("sRGB IEC61966-2.1", "Display P3"), None if unreadable."""
    from PIL import ImageCms

    try:
        return ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))).strip()
    except (OSError, ValueError, TypeError, ImageCms.PyCMSError):
        return None


def _is_srgb(description: str) -> bool:
    return "srgb" in description.lower().replace(" ", "")


def _to_srgb(array: np.ndarray, icc_profile: bytes, name: str) -> np.ndarray:
    """RGB pixels in the colour space of ``icc_profile`` -> sRGB (unchanged if it is sRGB)."""
    from PIL import ImageCms

    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
        description = ImageCms.getProfileDescription(profile).strip()
        if _is_srgb(description):
            return array
        converted = ImageCms.profileToProfile(
            Image.fromarray(array, "RGB"), profile, ImageCms.createProfile("sRGB"), outputMode="RGB"
        )
    except (OSError, ValueError, TypeError, ImageCms.PyCMSError) as exc:
        warnings.warn(f"{name}: unreadable ICC profile ignored ({exc})", stacklevel=4)
        return array
    warnings.warn(f"{name}: converted from ICC profile {description!r} to sRGB", stacklevel=4)
    return np.array(converted, dtype=np.uint8)


def _reject_16_bit_samples(image: Image.Image, name: str) -> None:
    # Pillow decodes 16-bit-per-channel RGB(A) PNGs and TIFFs as 8-bit "RGB" (raw mode
    # "RGB;16B"/"RGB;16L"), silently dropping the low byte; only the tile's raw mode tells.
    # (BMP's "BGR;16" is 5-6-5 packed 8-bit colour, hence the format check.)
    if image.format in ("PNG", "TIFF") and any(";16" in str(tile.args) for tile in image.tile):
        raise ImgcompError(f"{name}: 16-bit samples are not supported; imgcomp reads 8-bit images")


def load_image(source: ImageSource, size_check=None) -> np.ndarray:
    """Read an image as an ``(H, W, 3)`` uint8 RGB array, following the module's policy.

    ``size_check(width, height)``, if given, runs before the pixels are decoded (it may raise)."""
    if isinstance(source, np.ndarray):
        if size_check is not None and source.ndim >= 2:
            size_check(source.shape[1], source.shape[0])
        return as_rgb_array(source)
    if isinstance(source, Image.Image):
        if size_check is not None:
            size_check(*source.size)
        return _from_pil(source, "image")
    if isinstance(source, (bytes, bytearray, memoryview)):
        name, stream = "image bytes", io.BytesIO(bytes(source))
    else:
        path = Path(source)
        name = str(path)
        if not path.is_file():
            raise ImgcompError(f"{name}: no such file")
        stream = path
    _register_optional_plugins()
    try:
        with warnings.catch_warnings():
            if size_check is not None:  # the caller's pixel limit decides, not Pillow's warning
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(stream)
        with image:
            _reject_16_bit_samples(image, name)
            if size_check is not None:
                size_check(*image.size)
            image.load()
            return _from_pil(image, name)
    except ImgcompError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImgcompError(f"{name}: image too large ({exc})") from None
    except UnidentifiedImageError:
        raise ImgcompError(f"{name}: not an image file imgcomp can read") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImgcompError(f"{name}: corrupt or truncated image ({exc})") from None


def read_metadata(source: ImageSource) -> dict[str, bytes]:
    """What ``encode --keep-metadata`` carries: ``{"icc_profile": ..., "exif": ...}``, each only if
    present. EXIF loses its orientation tag (:func:`load_image` applies it to the pixels); the ICC
    profile is kept only if it is sRGB (any other is converted away by :func:`load_image`).
    Reads only the file's header and metadata, not its pixels. Arrays carry none."""
    if isinstance(source, np.ndarray):
        return {}
    if isinstance(source, Image.Image):
        return _metadata_of(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        name, stream = "image bytes", io.BytesIO(bytes(source))
    else:
        name, stream = str(source), Path(source)
    _register_optional_plugins()
    try:
        with Image.open(stream) as image:
            return _metadata_of(image)
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImgcompError(f"{name}: cannot read its metadata ({exc})") from None


def _metadata_of(image: Image.Image) -> dict[str, bytes]:
    metadata: dict[str, bytes] = {}
    icc_profile = image.info.get("icc_profile")
    if icc_profile and image.mode != "L":
        description = icc_description(icc_profile)
        if description is not None and _is_srgb(description):
            metadata["icc_profile"] = bytes(icc_profile)
    exif = image.getexif()
    if EXIF_ORIENTATION in exif:
        del exif[EXIF_ORIENTATION]
    if len(exif):
        metadata["exif"] = exif.tobytes()
    return metadata


def as_rgb_array(array: np.ndarray) -> np.ndarray:
    """Validate an in-memory image: uint8, ``(H, W)`` grayscale or ``(H, W, 3|4)``."""
    if array.dtype != np.uint8:
        raise ImgcompError(f"image array must be uint8, got {array.dtype}")
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ImgcompError(f"image array must have shape (H, W), (H, W, 3) or (H, W, 4), got {array.shape}")
    if array.shape[2] == 4:
        warnings.warn("alpha channel dropped (imgcomp codes colour only)", stacklevel=2)
        array = array[:, :, :3]
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ImgcompError("empty image")
    return np.ascontiguousarray(array)


def check_writable(paths, force: bool) -> None:
    """Refuse to overwrite a user's file, before any work: the first of ``paths`` that exists
    (a dangling symbolic link counts) raises, unless ``force``; two of ``paths`` naming the same
    file always raise, since the second would replace the first. The final write is exclusive too
    (:func:`write_atomic`), so a file created meanwhile is not replaced either."""
    seen: dict[str, Path] = {}
    for p in map(Path, paths):
        key = os.path.normcase(os.path.realpath(p))
        if key in seen:
            raise ImgcompError(f"{p}: two outputs would have this name; give them distinct names")
        seen[key] = p
    existing = [p for p in map(Path, paths) if os.path.lexists(p)]
    if existing and not force:
        raise ImgcompError(f"{existing[0]}: exists (use --force to overwrite)")


def save_image(array: np.ndarray, path: str | os.PathLike, *, force: bool = False) -> Path:
    """Write an RGB array; the format follows the suffix. Refuses to overwrite unless ``force``.

    The file is written to a temporary name first and renamed, so a failure never leaves a
    partial output behind.
    """
    path = Path(path)
    check_writable([path], force)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ImgcompError(f"{path}: unknown image suffix {path.suffix!r}")
    image = Image.fromarray(as_rgb_array(array), "RGB")
    write_atomic(path, lambda handle: image.save(handle, format=fmt), overwrite=force)
    return path


def image_format(name: str) -> str:
    """Pillow's format for a name or suffix a user typed ("png", ".JPG", "webp", ...)."""
    suffix = "." + name.lower().lstrip(".")
    fmt = Image.registered_extensions().get(suffix)
    if fmt is None or fmt not in Image.SAVE:
        raise ImgcompError(f"unknown image format {name!r}; e.g. png, jpg, webp, tiff, bmp")
    return fmt


_USUAL_SUFFIXES = {"JPEG": ".jpg", "TIFF": ".tif", "JPEG2000": ".jp2"}


def image_suffix(fmt: str) -> str:
    """The usual file suffix of a Pillow format (".png", ".jpg", ".webp", ...)."""
    if fmt in _USUAL_SUFFIXES:
        return _USUAL_SUFFIXES[fmt]
    return min((ext for ext, name in Image.registered_extensions().items() if name == fmt), key=len)


METADATA_FORMATS = ("PNG", "JPEG", "WEBP", "TIFF")  # formats that hold an ICC profile and EXIF


PNG_COMPRESS_LEVEL = 4  # measured on a decoded 768x512 photo: 464 KB in 0.06 s; Pillow's default 6: 470 KB in 0.17 s


def image_bytes(array: np.ndarray, fmt: str, metadata: dict[str, bytes] | None = None) -> bytes:
    """An RGB array encoded in memory in Pillow's format ``fmt`` (see :func:`image_format`), with
    ``metadata`` (``icc_profile``, ``exif``: see :func:`read_metadata`) where the format holds it;
    other formats drop it with a warning."""
    params = {}
    if metadata:
        if fmt in METADATA_FORMATS:
            if metadata.get("icc_profile"):
                params["icc_profile"] = bytes(metadata["icc_profile"])
            if metadata.get("exif"):
                exif = bytes(metadata["exif"])
                params["exif"] = exif if exif.startswith(b"Exif\x00\x00") else b"Exif\x00\x00" + exif
        else:
            warnings.warn(f"imgcomp writes no ICC profile or EXIF into {fmt}; the file's metadata is dropped", stacklevel=2)
    if fmt == "PNG":  # zlib level 4: on decoded photos as small as Pillow's default 6, about 3x faster
        params["compress_level"] = PNG_COMPRESS_LEVEL
    buffer = io.BytesIO()
    Image.fromarray(as_rgb_array(array), "RGB").save(buffer, format=fmt, **params)
    return buffer.getvalue()


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_atomic(path: Path, write, *, overwrite: bool = True) -> None:
    """Call ``write(handle)`` on a temporary file beside ``path`` and move it into place, so a
    failure never leaves a partial file. With ``overwrite=False`` the move is exclusive (a hard
    link, which fails if anything, a dangling link included, holds the name): a file that appeared
    after the caller's checks is never replaced."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            write(handle)
        if overwrite:
            os.replace(tmp, path)
        else:
            _link_exclusive(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _link_exclusive(tmp: Path, path: Path) -> None:
    try:
        os.link(tmp, path)
        return
    except FileExistsError:
        raise ImgcompError(f"{path}: exists (use --force to overwrite)") from None
    except OSError:  # no hard links on this file system: claim the name, then replace it
        pass
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError:
        raise ImgcompError(f"{path}: exists (use --force to overwrite)") from None
    os.replace(tmp, path)


_plugins_registered = False


def _register_optional_plugins() -> None:
    """Let Pillow open HEIC (pillow-heif) and imgcomp's own ``.icz`` files."""
    global _plugins_registered
    if _plugins_registered:
        return
    _plugins_registered = True
    try:
        import pillow_heif

        pillow_heif.register_heif_opener()
    except ImportError:  # pragma: no cover - optional at run time
        pass


def cache_root() -> Path:
    """imgcomp's cache folder: ``$IMGCOMP_CACHE``, else ``$XDG_CACHE_HOME/imgcomp``, else
    ``~/.cache/imgcomp`` (fetched packages, LPIPS weights; each in a subfolder)."""
    if os.environ.get("IMGCOMP_CACHE"):
        return Path(os.environ["IMGCOMP_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "imgcomp"
