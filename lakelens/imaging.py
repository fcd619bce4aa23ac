"""Image decoding shared by ingest and the model UDFs: header probe, full decode check, normalised RGB.

Every decoder in lakelens goes through :func:`decode_rgb`, so EXIF orientation, palettes, alpha, CMYK,
16-bit and animated files are handled the same way everywhere. Nothing here raises on bad bytes except
:func:`decode_rgb`, whose callers turn the exception into an ``error`` value.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

# lakelens enforces its own pixel limit from the header (ingest.max_pixels), before any pixel is decoded.
Image.MAX_IMAGE_PIXELS = None
# A truncated file must fail its decode check, never decode as a grey-padded image.
ImageFile.LOAD_TRUNCATED_IMAGES = False

EXIF_ORIENTATION = 0x0112
_SIXTEEN_BIT = {"I;16", "I;16L", "I;16B", "I;16N"}
_ALPHA = {"RGBA", "LA", "La", "RGBa", "PA"}
WHITE = (255, 255, 255)
# decode_rgb_for reduces a JPEG's decode only when it is this many times the model's input (a photo, not a thumbnail).
REDUCE_FROM = 4


class ImageDecodeError(ValueError):
    """The bytes are not an image that lakelens can turn into RGB pixels; the message says why."""


@dataclass(frozen=True)
class ImageInfo:
    """What ingest records of one file. ``error`` is None when the image decodes fully."""

    width: int | None = None
    height: int | None = None
    format: str | None = None
    mode: str | None = None
    frames: int | None = None
    exif_orientation: int | None = None
    error: str | None = None


def probe(data: bytes | None, max_pixels: int) -> ImageInfo:
    """Read the header, refuse decompression bombs, then decode every pixel once to check the file.

    Args:
        data: the file's bytes (None or empty gives an error).
        max_pixels: width * height above this is refused without decoding.

    Returns:
        ImageInfo with size after EXIF orientation; ``error`` set when the file is not a usable image.
    """
    if not data:
        return ImageInfo(error="empty file (0 bytes)")
    try:
        img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        return ImageInfo(error="not an image: no known image format in the file's bytes")
    except Exception as exc:  # Pillow raises many types for malformed headers
        return ImageInfo(error=f"unreadable image header: {_describe(exc)}")
    width, height = img.size
    orientation = _orientation(img)
    if orientation in (5, 6, 7, 8):  # the image is stored on its side
        width, height = height, width
    info = ImageInfo(
        width=width,
        height=height,
        format=img.format,
        mode=img.mode,
        frames=int(getattr(img, "n_frames", 1)),
        exif_orientation=orientation,
    )
    if width * height > max_pixels:
        return _with_error(
            info,
            f"too many pixels: {width}x{height} = {width * height} > ingest.max_pixels {max_pixels} "
            "(decompression-bomb guard)",
        )
    try:
        to_rgb(img)
    except Exception as exc:
        return _with_error(info, f"decode failed: {_describe(exc)}")
    return info


def decode_rgb(data: bytes, max_pixels: int | None = None) -> np.ndarray:
    """Decode bytes to upright RGB pixels.

    Args:
        data: encoded image bytes (JPEG, PNG, GIF, WebP, TIFF, BMP, ...).
        max_pixels: refuse images with more pixels than this (None: no limit).

    Returns:
        uint8 [H, W, 3], EXIF orientation applied, alpha composited on white, first frame of animations.

    Raises:
        ImageDecodeError: the bytes are not a decodable image, or it is too large.
    """
    return decode_rgb_for(data, None, max_pixels)[0]


def decode_rgb_for(data: bytes, side: int | None, max_pixels: int | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode bytes for a model that reads ``side`` x ``side`` pixels: upright RGB, and the image's full upright
    (width, height).

    A JPEG at least 4 times ``side`` on both sides is decoded at a reduced scale (1/2 to 1/8, in the DCT, so
    most of its decode is skipped) that keeps both sides >= ``side``; the model's resize then works from that, as
    from a full decode. Anything else (and everything when ``side`` is None) decodes whole, as :func:`decode_rgb`.

    Raises:
        ImageDecodeError: the bytes are not a decodable image, or it has more than ``max_pixels`` pixels.
    """
    try:
        img = Image.open(io.BytesIO(data))
        width, height = img.size
        if max_pixels is not None and width * height > max_pixels:
            raise ImageDecodeError(f"too many pixels: {width}x{height} > {max_pixels}")
        if side and img.format == "JPEG" and min(width, height) >= REDUCE_FROM * side:
            img.draft("RGB", (side, side))
        upright = (height, width) if _orientation(img) in (5, 6, 7, 8) else (width, height)
        return np.asarray(to_rgb(img)), upright
    except ImageDecodeError:
        raise
    except Exception as exc:
        raise ImageDecodeError(_describe(exc)) from exc


def to_rgb(img: Image.Image) -> Image.Image:
    """An opened image as fully decoded, upright RGB (the one normalisation every consumer shares)."""
    img.seek(0)
    img.load()
    img = ImageOps.exif_transpose(img) or img
    if img.mode in _SIXTEEN_BIT or img.mode == "I":
        img = _eight_bit_gray(img)
    if img.mode in ("P", "PA"):
        img = img.convert("RGBA")
    if img.mode in _ALPHA:
        rgba = img.convert("RGBA")
        flat = Image.new("RGB", rgba.size, WHITE)
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    if img.mode == "F":
        raise ImageDecodeError("unsupported mode F (32-bit float pixels)")
    return img if img.mode == "RGB" else img.convert("RGB")


def _eight_bit_gray(img: Image.Image) -> Image.Image:
    """16-bit (or 32-bit integer) gray scaled to 8 bits by range, not clipped (clipping whitens the image)."""
    arr = np.asarray(img).astype(np.int64)
    top = 65535 if img.mode in _SIXTEEN_BIT or arr.max(initial=0) > 255 else 255
    return Image.fromarray((np.clip(arr, 0, top) * 255 // top).astype(np.uint8), "L")


def _orientation(img: Image.Image) -> int:
    try:
        value = int(img.getexif().get(EXIF_ORIENTATION, 1))
    except Exception:  # a corrupt EXIF block is not a corrupt image
        return 1
    return value if 1 <= value <= 8 else 1


def _with_error(info: ImageInfo, error: str) -> ImageInfo:
    return ImageInfo(**{**info.__dict__, "error": error})


def _describe(exc: BaseException) -> str:
    # Without object addresses ("<_io.BytesIO object at 0x7f...>"): the same bad file gives the same error row.
    text = re.sub(r" at 0x[0-9a-fA-F]+", "", str(exc)).strip() or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."
