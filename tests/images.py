"""Tiny images made in code for tests: every odd mode and bad file that ingest must turn into a row."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def encode(img: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **params)
    return buf.getvalue()


def rgb(w: int = 24, h: int = 16, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")


def exif_rotated_jpeg(w: int = 30, h: int = 20, orientation: int = 6) -> bytes:
    """A JPEG stored w x h whose EXIF says to rotate it (6: 90 degrees clockwise, so it shows h x w)."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(rgb(w, h, seed=7), "JPEG", exif=exif.tobytes())


def sixteen_bit_png(w: int = 20, h: int = 10) -> bytes:
    arr = np.linspace(0, 65535, w * h, dtype=np.uint16).reshape(h, w)
    return encode(Image.fromarray(arr), "PNG")


def animated_gif(frames: int = 3) -> bytes:
    imgs = [Image.new("RGB", (12, 12), color=(i * 80, 255 - i * 80, 0)) for i in range(frames)]
    buf = io.BytesIO()
    imgs[0].save(buf, format="GIF", save_all=True, append_images=imgs[1:], duration=50, loop=0)
    return buf.getvalue()


def png_bomb_header(w: int = 100_000, h: int = 100_000) -> bytes:
    """A PNG whose header claims w x h pixels (10 gigapixels): it must be refused before any decode."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    head = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    idat = zlib.compress(b"\x00" * 1024)
    return head + struct.pack(">I", len(idat)) + b"IDAT" + idat + struct.pack(">I", zlib.crc32(b"IDAT" + idat))


def odd_files() -> dict[str, bytes]:
    """File name -> bytes for one of each case ingest must handle; names say what each is."""
    good_jpeg = encode(rgb(seed=1), "JPEG", quality=90)
    big_jpeg = encode(rgb(160, 120, seed=8), "JPEG", quality=90)  # big enough that its header survives a cut
    return {
        "good.jpg": good_jpeg,
        "good.png": encode(rgb(seed=2), "PNG"),
        "gray.png": encode(rgb(seed=3).convert("L"), "PNG"),
        "palette.png": encode(rgb(seed=4).convert("P"), "PNG"),
        "alpha.png": encode(rgb(seed=5).convert("RGBA"), "PNG"),
        "cmyk.jpg": encode(rgb(seed=6).convert("CMYK"), "JPEG"),
        "sixteen.png": sixteen_bit_png(),
        "animated.gif": animated_gif(),
        "rotated.jpg": exif_rotated_jpeg(),
        "float.tif": encode(Image.fromarray(np.ones((8, 8), np.float32)), "TIFF"),
        "empty.jpg": b"",
        "text.jpg": b"this is a text file, not a JPEG\n",
        "truncated.jpg": big_jpeg[: len(big_jpeg) * 2 // 3],
        "bomb.png": png_bomb_header(),
    }


# odd_files() name -> what probe must find: (format, mode, width, height, frames, orientation, error prefix or None)
ODD_EXPECTED = {
    "good.jpg": ("JPEG", "RGB", 24, 16, 1, 1, None),
    "good.png": ("PNG", "RGB", 24, 16, 1, 1, None),
    "gray.png": ("PNG", "L", 24, 16, 1, 1, None),
    "palette.png": ("PNG", "P", 24, 16, 1, 1, None),
    "alpha.png": ("PNG", "RGBA", 24, 16, 1, 1, None),
    "cmyk.jpg": ("JPEG", "CMYK", 24, 16, 1, 1, None),
    "sixteen.png": ("PNG", "I;16", 20, 10, 1, 1, None),
    "animated.gif": ("GIF", "P", 12, 12, 3, 1, None),
    "rotated.jpg": ("JPEG", "RGB", 20, 30, 1, 6, None),
    "float.tif": ("TIFF", "F", 8, 8, 1, 1, "decode failed: unsupported mode F"),
    "empty.jpg": (None, None, None, None, None, None, "empty file (0 bytes)"),
    "text.jpg": (None, None, None, None, None, None, "not an image"),
    "truncated.jpg": ("JPEG", "RGB", 160, 120, 1, 1, "decode failed: image file is truncated"),
    "bomb.png": ("PNG", "RGB", 100_000, 100_000, 1, 1, "too many pixels: 100000x100000"),
}


def write_files(folder: Path, files: dict[str, bytes]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        paths.append(path)
    return paths


COLOURS = [(220, 30, 30), (30, 200, 30), (30, 30, 220)]  # label = index of the dominant colour


def coloured_image(label: int, seed: int) -> bytes:
    """A noisy 20x20 PNG of one of COLOURS: the label is the colour's index."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.asarray(COLOURS[label]) + rng.normal(0, 25, (20, 20, 3)), 0, 255).astype(np.uint8)
    return encode(Image.fromarray(pixels), "PNG")
