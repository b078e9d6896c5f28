"""Compress and decompress images: the container, dispatched to the system that wrote each file.

One image's path to bytes: :func:`encode_image` loads the model (:mod:`imgcomp.zoo`), asks its
system (:mod:`imgcomp.systems`) for the payload, adds the optional low-pass correction layer
(:mod:`imgcomp.postfilter.lowpass`, fitted on the system's own reconstruction) as a section of its
own, and packs both into a version-4 container (:mod:`imgcomp.container`). :func:`decode_image`
reads the container, finds the model by its tag and the system by its id, and inverts each step;
files of container versions 2 and 3 (imgcomp 0.2-0.5) decode as they always did.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Union

import numpy as np

from imgcomp import container, limits
from imgcomp.entropy import SymbolDecoder, SymbolEncoder
from imgcomp.errors import ImgcompError
from imgcomp.io import ImageSource, load_image, read_metadata
from imgcomp.postfilter.lowpass import (
    AUTO, DEFAULT_LOWPASS, LowpassSettings, apply_offsets, apply_offsets_numpy, choose_lowpass, decode_offsets,
    encode_offsets, fit_offsets,
)
from imgcomp.systems import system_for_id, system_id
from imgcomp.zoo import find_model_by_tag, get_model, get_torch_free_model, model_folder, require_shipped_name_by_tag

if TYPE_CHECKING:  # loading a torch model imports torch; decoding a file may need none (engine "numpy")
    from imgcomp.models.export import LoadedModel

ModelArg = Union[str, os.PathLike, "LoadedModel", None]
Engine = Literal["auto", "numpy", "torch"]
ENGINES = ("auto", "numpy", "torch")


@dataclass
class EncodeResult:
    """A compressed file and what it cost."""

    data: bytes
    width: int
    height: int
    quality: int
    estimated_bits: float  # ideal coding cost: sum -log2 P (eq. 13) plus the low-pass layer's
    payload_bytes: int  # bytes of the sections (system payload and low-pass layer)
    seconds: float
    reconstruction: np.ndarray | None = field(default=None, repr=False)
    lowpass: LowpassSettings | None = None  # the low-pass settings coded (None: no section)
    metadata_bytes: int = 0  # the metadata section (keep_metadata), not counted in payload_bytes

    @property
    def header_bytes(self) -> int:
        return len(self.data) - self.payload_bytes - self.metadata_bytes

    @property
    def bpp(self) -> float:
        return 8 * len(self.data) / (self.width * self.height)


def _check_quality(loaded: LoadedModel, quality: int | None) -> int:
    levels = loaded.system.qualities(loaded)
    if quality is None:
        return levels
    if not 1 <= quality <= levels:
        raise ImgcompError(f"quality must be between 1 and {levels} for this model, got {quality}")
    return quality


def encode_image(
    image: ImageSource, quality: int | None = None, model: ModelArg = None, keep_reconstruction: bool = False,
    lowpass: LowpassSettings | Literal["auto"] | None = AUTO, refine_steps: int = 0, keep_metadata: bool = False,
    max_pixels: int | None = None, stream_version: int | None = None,
) -> EncodeResult:
    """Compress an image; the full-detail API behind :func:`compress`.

    ``lowpass`` sets the low-pass correction layer (:mod:`imgcomp.postfilter.lowpass`): ``"auto"``
    lets the model's system choose (``System.automatic_lowpass``: Mentzer et al. and Patel et al.
    pick the settings for this image by rate-distortion search,
    :func:`~imgcomp.postfilter.lowpass.choose_lowpass`; a Rippel & Bourdev model trained for fixed
    settings codes with those), ``None`` leaves it out (the file then
    holds only what the system codes). ``refine_steps`` > 0 lets the system optimise its latent for
    this image first (Mentzer et al.: :mod:`imgcomp.systems.mentzer2018.refine`): smaller, better
    files for a slower encode. ``keep_metadata`` carries the input's EXIF (less its orientation)
    and sRGB ICC profile in a metadata section (:func:`imgcomp.io.read_metadata`). ``max_pixels``
    overrides the pixel limit (:mod:`imgcomp.limits`). ``stream_version`` forces the system's
    payload version (default: the system's choice for this model; for Mentzer et al. 2, exact on
    every machine)."""
    started = time.perf_counter()
    if refine_steps < 0:
        raise ImgcompError(f"refine_steps must be >= 0, got {refine_steps}")
    if lowpass is not None and lowpass != AUTO and not isinstance(lowpass, LowpassSettings):
        raise ImgcompError(f"lowpass must be LowpassSettings, {AUTO!r} or None, got {lowpass!r}")
    loaded = get_model(model)
    quality = _check_quality(loaded, quality)

    pixels = load_image(image, size_check=lambda width, height: _check_size(width, height, max_pixels))
    metadata = read_metadata(image) if keep_metadata else {}
    height, width = pixels.shape[:2]
    with limits.out_of_memory("encode", width, height):
        return _encode_pixels(
            loaded, pixels, quality, keep_reconstruction, lowpass, refine_steps, started, metadata, stream_version
        )


def _check_size(width: int, height: int, max_pixels: int | None) -> None:
    if height * width > container.MAX_PIXELS or max(height, width) > container.MAX_SIDE:
        raise ImgcompError(f"image {width}x{height} is too large for the .icz format")
    limits.check_image("encode", width, height, max_pixels)


def _pad_payload(payload: bytes, width: int, height: int, lowpass_bytes: int) -> bytes:
    """Zero words appended to a degenerate image's payload so the file meets the container's
    bytes-per-pixel floor (a range-coded stream reads past its end as zeros: same symbols)."""
    missing = limits.min_payload_bytes(width, height) - len(payload) - lowpass_bytes
    return payload + bytes(-(-missing // 4) * 4) if missing > 0 else payload


def _encode_pixels(
    loaded, pixels, quality, keep_reconstruction, lowpass, refine_steps, started, metadata, stream_version
) -> EncodeResult:
    lowpass = _automatic(loaded, lowpass)
    objective_lowpass = DEFAULT_LOWPASS if lowpass == AUTO else lowpass
    encoded = _system_encode(loaded, pixels, quality, refine_steps, objective_lowpass, stream_version)
    decoded = encoded.reconstruct() if keep_reconstruction or lowpass is not None else None
    return _finish_file(loaded, pixels, quality, encoded, decoded, lowpass, keep_reconstruction, metadata, started)


def _automatic(loaded, lowpass):
    """``"auto"`` as the model's system means it: the per-image search or the model's own settings."""
    return loaded.system.automatic_lowpass(loaded) if lowpass == AUTO else lowpass


def _system_encode(loaded, pixels, quality, refine_steps, objective_lowpass, stream_version):
    extra = {} if stream_version is None else {"stream_version": stream_version}
    return loaded.system.encode(
        loaded, pixels, quality, refine_steps=refine_steps, objective_lowpass=objective_lowpass, **extra
    )


def _finish_file(
    loaded, pixels, quality, encoded, decoded, lowpass, keep_reconstruction, metadata, started
) -> EncodeResult:
    """The file of a system encode with the low-pass layer ``lowpass`` (fitted on ``decoded``, the
    system's reconstruction), padded to the container's floor, with its metadata section."""
    height, width = pixels.shape[:2]
    system = loaded.system
    stream_version = encoded.stream_version or system.stream_version
    bits = encoded.estimated_bits
    sections = {container.SECTION_SYSTEM: encoded.payload}
    offsets = None
    if lowpass == AUTO:
        lowpass, offsets = choose_lowpass(pixels, decoded, bits)
    elif lowpass is not None:
        offsets = fit_offsets(pixels, decoded, lowpass)
    if lowpass is not None:
        section = SymbolEncoder()
        bits += encode_offsets(section, offsets, lowpass, system.lowpass_version(stream_version))
        sections[container.SECTION_LOWPASS] = section.finish()
    reconstruction = None
    if keep_reconstruction:
        reconstruction = decoded if offsets is None else apply_offsets(decoded, offsets, lowpass)
    sections[container.SECTION_SYSTEM] = _pad_payload(
        sections[container.SECTION_SYSTEM], width, height, len(sections.get(container.SECTION_LOWPASS, b""))
    )
    payload_bytes = sum(len(section) for section in sections.values())
    if metadata:
        sections[container.SECTION_METADATA] = container.pack_metadata(metadata)
    header = container.Header(
        width, height, quality, system.model_tag(loaded.weights_sha256, loaded.path, stream_version),
        system_id(system.name), stream_version,
    )
    data = container.pack(header, sections)
    return EncodeResult(
        data, width, height, quality, bits, payload_bytes, time.perf_counter() - started, reconstruction, lowpass,
        len(sections.get(container.SECTION_METADATA, b"")),
    )


def encode_variants(
    pixels: np.ndarray, quality: int, loaded: LoadedModel, lowpass_options: list,
    metadata: dict[str, bytes] | None = None,
) -> list[EncodeResult]:
    """The files :func:`encode_image` writes for ``pixels`` at ``quality`` with each of
    ``lowpass_options`` (``"auto"``, ``None`` or :class:`LowpassSettings`), byte for byte, from one
    system encode: without refinement the system's payload does not depend on the low-pass layer.
    ``pixels`` is an (H, W, 3) uint8 array (:func:`imgcomp.io.load_image`); ``metadata`` as
    :func:`imgcomp.io.read_metadata` gives it."""
    started = time.perf_counter()
    quality = _check_quality(loaded, quality)
    height, width = pixels.shape[:2]
    _check_size(width, height, None)
    with limits.out_of_memory("encode", width, height):
        encoded = _system_encode(loaded, pixels, quality, 0, None, None)
        decoded = encoded.reconstruct() if any(option is not None for option in lowpass_options) else None
        return [
            _finish_file(loaded, pixels, quality, encoded, decoded, _automatic(loaded, option), False, metadata or {}, started)
            for option in lowpass_options
        ]


def _tag_of(loaded, stream_version: int) -> bytes | None:
    try:
        return loaded.system.model_tag(loaded.weights_sha256, loaded.path, stream_version)
    except ImgcompError:  # e.g. a stream version this model cannot code
        return None


def _check_model_matches(header: container.Header, loaded) -> None:
    if _tag_of(loaded, header.stream_version) != header.model_tag:
        raise ImgcompError(
            "file was made with a different model (its tag "
            f"{header.model_tag.hex()} does not match {loaded.weights_sha256[:4]})"
        )
    if system_id(loaded.system.name) != header.system_id:
        raise ImgcompError(f"file was made by system id {header.system_id}, not by {loaded.system.name}")


def _model_for(header: container.Header, model: ModelArg) -> LoadedModel:
    if model is None:
        return find_model_by_tag(header.model_tag, header.system_id, header.stream_version)
    loaded = get_model(model)
    _check_model_matches(header, loaded)
    return loaded


def _torch_free_model_for(header: container.Header, model: ModelArg) -> Any | None:
    """The file's model loaded for decoding without torch, or None where that is not possible
    (the system or stream version needs torch, ``model`` is a loaded torch model, sharded weights)."""
    from imgcomp.models.torch_free import supports_torch_free

    if not supports_torch_free(system_for_id(header.system_id), header.stream_version):
        return None
    if model is None:
        loaded = get_torch_free_model(
            require_shipped_name_by_tag(header.model_tag, header.system_id, header.stream_version))
    elif isinstance(model, (str, os.PathLike)):
        loaded = get_torch_free_model(model_folder(model))
        if loaded is not None:
            _check_model_matches(header, loaded)
    else:
        return None
    return loaded


def _parse(data: bytes) -> tuple[container.Header, dict[int, bytes]]:
    header, sections = container.unpack(data)
    system = system_for_id(header.system_id)  # an unknown or unimplemented system says so first
    if header.stream_version not in system.readable_stream_versions:  # ... then a newer stream version
        raise ImgcompError(
            f"{system.name} stream version {header.stream_version} is not readable by this imgcomp "
            f"(it reads {', '.join(map(str, system.readable_stream_versions))})"
        )
    return header, sections


def read_file(data: bytes, model: ModelArg = None) -> tuple[container.Header, dict[int, bytes], LoadedModel]:
    """Parse a file and find its (torch) model (validated, nothing decoded yet)."""
    header, sections = _parse(data)
    loaded = _model_for(header, model)
    _check_quality(loaded, header.quality)
    return header, sections, loaded


def _decoding_model(header: container.Header, model: ModelArg, engine: str):
    """The model that decodes this file with ``engine`` (module doc of :func:`decode_image`)."""
    if engine not in ENGINES:
        raise ImgcompError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    loaded = None if engine == "torch" else _torch_free_model_for(header, model)
    if loaded is None:
        if engine == "numpy":
            raise ImgcompError(
                f"this file (stream version {header.stream_version}) or model cannot be decoded without torch; "
                "use engine 'torch'")
        loaded = _model_for(header, model)
    _check_quality(loaded, header.quality)
    return loaded


def decode_image(
    data: bytes, model: ModelArg = None, max_pixels: int | None = None, engine: Engine = "auto",
) -> np.ndarray:
    """Decompress to an (H, W, 3) uint8 array; ``max_pixels`` overrides the pixel limit
    (:mod:`imgcomp.limits`).

    ``engine``: ``"numpy"`` decodes without importing torch (exact integer symbols, numpy synthesis;
    files of a system's ``torch_free_stream_versions``: mentzer2018 stream version 2, rippel2017,
    of a model folder with ``model.safetensors``), ``"torch"`` with the torch model (every file; the
    cross-check), ``"auto"`` (default) the first where possible. The symbols are the same either
    way; pixels may differ by a rounding step (docs/format.md, docs/rippel2017.md)."""
    header, sections = _parse(data)
    loaded = _decoding_model(header, model, engine)
    limits.check_image("decode", header.width, header.height, max_pixels)
    with limits.out_of_memory("decode", header.width, header.height):
        return _decode_sections(header, sections, loaded)


def _decode_sections(header: container.Header, sections: dict[int, bytes], loaded) -> np.ndarray:
    system = loaded.system
    decoded = system.decode(
        loaded, sections[container.SECTION_SYSTEM], header.width, header.height, header.quality, header.stream_version
    )
    if header.lowpass_in_payload:  # container v3: the layer continues the system's stream
        offsets, settings = decode_offsets(decoded.decoder, header.height, header.width)  # v3: stream version 1
    elif container.SECTION_LOWPASS in sections:
        offsets, settings = decode_offsets(
            SymbolDecoder(sections[container.SECTION_LOWPASS]), header.height, header.width,
            system.lowpass_version(header.stream_version),
        )
        if settings is None:
            raise ImgcompError("corrupt file: empty low-pass section")
    else:
        settings = None
    if settings is None:
        return decoded.pixels
    return (apply_offsets_numpy if getattr(loaded, "torch_free", False) else apply_offsets)(decoded.pixels, offsets, settings)


def read_metadata_section(data: bytes) -> dict[str, bytes]:
    """The ICC profile and EXIF a file carries (``{}`` if it was made without ``keep_metadata``);
    EXIF as a TIFF structure. Validates the container; decodes no pixels."""
    _, sections = container.unpack(data)
    return container.unpack_metadata(sections.get(container.SECTION_METADATA, b""))


def compress(
    image: ImageSource, quality: int | None = None, model: ModelArg = None, refine_steps: int = 0,
    keep_metadata: bool = False, max_pixels: int | None = None,
) -> bytes:
    """Compress an image (path, bytes, PIL image or (H, W, 3) uint8 array) to ``.icz`` bytes.

    ``quality`` picks the quality level (1 = smallest file); the default is the highest.
    ``model`` is a shipped model's name (``"mentzer2018/cpu-mixed"``, the default), a model
    folder or a loaded model. ``refine_steps`` > 0 trades encode time for smaller, better files.
    ``keep_metadata`` keeps the EXIF (less its orientation) and an sRGB ICC profile in the file;
    :func:`decompress` returns them in the image's ``info``. ``max_pixels`` overrides the pixel
    limit (default 8192 x 8192, :mod:`imgcomp.limits`).
    """
    return encode_image(
        image, quality, model, refine_steps=refine_steps, keep_metadata=keep_metadata, max_pixels=max_pixels
    ).data


def decompress(
    data: bytes, model: ModelArg = None, as_array: bool = False, max_pixels: int | None = None,
    engine: Engine = "auto",
):
    """Decompress ``.icz`` bytes to a PIL image (or an (H, W, 3) uint8 array). A file made with
    ``keep_metadata`` gives the image ``info["icc_profile"]`` and ``info["exif"]`` (as Pillow's
    readers do, so ``image.save(..., exif=image.info["exif"])`` works). ``engine``: as
    :func:`decode_image` (by default without torch where the file allows)."""
    pixels = decode_image(data, model, max_pixels=max_pixels, engine=engine)
    if as_array:
        return pixels
    from PIL import Image

    image = Image.fromarray(pixels, "RGB")
    metadata = read_metadata_section(data)
    if "icc_profile" in metadata:
        image.info["icc_profile"] = metadata["icc_profile"]
    if "exif" in metadata:
        image.info["exif"] = b"Exif\x00\x00" + metadata["exif"]
    return image
