"""Which images the colourise task colours: grey (any grey mode, or RGB without chroma up to JPEG noise), tinted
(one hue: sepia), or colour."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageOps

from lakelens.imaging import decode_rgb
from lakelens.tint import colour_kind


def scene(size: int = 96) -> Image.Image:
    """A colourful RGB image: a red disc, a blue bar and a green square on a yellow-ish gradient."""
    y, x = np.mgrid[0:size, 0:size]
    rgb = np.stack([200 + 0 * x, 150 + x // 2, 60 + y // 3], axis=-1).astype(np.uint8)
    rgb[(x - 30) ** 2 + (y - 30) ** 2 < 200] = (220, 30, 30)
    rgb[60:70, 10:80] = (30, 40, 200)
    rgb[20:40, 60:80] = (40, 180, 60)
    return Image.fromarray(rgb)


def through(img: Image.Image, fmt: str = "JPEG") -> np.ndarray:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **({"quality": 85} if fmt == "JPEG" else {}))
    return decode_rgb(buffer.getvalue())


@pytest.mark.parametrize("mode", ["L", "LA", "I;16", "RGB"])
def test_grey_images_of_any_mode_are_grey(mode: str) -> None:
    grey = scene().convert("L")
    img = grey.convert("RGB") if mode == "RGB" else grey.convert(mode) if mode != "I;16" else Image.fromarray(
        np.asarray(grey).astype(np.uint16) * 257)  # fmt: skip
    assert colour_kind(through(img, "PNG")) == "grey"
    if mode in ("L", "RGB"):
        assert colour_kind(through(img, "JPEG")) == "grey"  # JPEG's chroma noise stays under the bar


def test_sepia_is_tinted_and_colour_is_colour() -> None:
    grey = scene().convert("L")
    assert colour_kind(through(ImageOps.colorize(grey, black=(40, 26, 13), white=(255, 240, 220)))) == "tinted"
    assert colour_kind(through(ImageOps.colorize(grey, black=(0, 20, 60), white=(200, 230, 255)))) == "tinted"
    assert colour_kind(through(scene())) == "colour"
    assert colour_kind(np.asarray(scene())) == "colour"


def test_sepia_with_clipped_highlights_is_tinted() -> None:
    """The sepia matrix clips red first in the highlights, which turn yellow: the hue is judged in the mid tones."""
    y, x = np.mgrid[0:96, 0:96]
    grey = np.clip(x * 500 / 96 + y % 16, 0, 255)  # from black to white, half the image in the highlights
    sepia = np.clip(grey[..., None] * np.array([1.351, 1.203, 0.937]), 0, 255).astype(np.uint8)  # the matrix on grey
    assert colour_kind(through(Image.fromarray(sepia))) == "tinted"


def test_a_grey_image_with_objects_of_one_colour_is_colour() -> None:
    rgb = np.asarray(ImageOps.grayscale(scene()).convert("RGB")).copy()
    rgb[10:40, 10:40] = (220, 30, 30)  # a red square and a darker red bar: one hue, on a fifth of the pixels
    rgb[60:70, 10:80] = (150, 20, 20)
    assert colour_kind(through(Image.fromarray(rgb), "PNG")) == "colour"


def test_one_pixel_all_black_and_huge_images_are_judged() -> None:
    assert colour_kind(np.full((1, 1, 3), 128, np.uint8)) == "grey"
    assert colour_kind(np.zeros((40, 30, 3), np.uint8)) == "grey"
    assert colour_kind(np.array([[[255, 0, 0]]], np.uint8)) == "tinted"  # one pixel: one hue
    huge = np.asarray(scene(96).resize((4000, 3000)))
    assert colour_kind(huge) == "colour"
    stamped = np.repeat(np.asarray(scene(96).convert("L"))[..., None], 3, axis=2).copy()
    stamped[:3, :3] = (255, 0, 0)  # a few stray coloured pixels do not make a grey scan colour
    assert colour_kind(stamped) == "grey"
