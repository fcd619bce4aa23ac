"""The shared decoder: header probe, decode check and RGB normalisation for every odd case."""

from __future__ import annotations

import numpy as np
import pytest
from images import ODD_EXPECTED as EXPECTED
from images import encode, exif_rotated_jpeg, odd_files, rgb
from PIL import Image

from lakelens.imaging import ImageDecodeError, ImageInfo, decode_rgb, probe

MAX_PIXELS = 50_000_000


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_probe_records_metadata_and_errors(name: str) -> None:
    info = probe(odd_files()[name], MAX_PIXELS)
    fmt, mode, width, height, frames, orientation, error = EXPECTED[name]
    assert (info.format, info.mode, info.width, info.height, info.frames, info.exif_orientation) == (
        fmt,
        mode,
        width,
        height,
        frames,
        orientation,
    )
    if error is None:
        assert info.error is None
    else:
        assert info.error is not None and info.error.startswith(error), info.error


def test_probe_pixel_limit_is_configurable() -> None:
    assert probe(encode(rgb(24, 16), "PNG"), max_pixels=24 * 16).error is None
    info = probe(encode(rgb(24, 16), "PNG"), max_pixels=24 * 16 - 1)
    assert info.error is not None and "ingest.max_pixels 383" in info.error


@pytest.mark.parametrize("name", [n for n, e in EXPECTED.items() if e[-1] is None])
def test_decode_rgb_gives_upright_uint8_rgb(name: str) -> None:
    pixels = decode_rgb(odd_files()[name])
    _, _, width, height, *_ = EXPECTED[name]
    assert pixels.dtype == np.uint8 and pixels.shape == (height, width, 3)


def test_exif_rotation_is_applied() -> None:
    stored = np.asarray(Image.open(__import__("io").BytesIO(exif_rotated_jpeg())).convert("RGB")).astype(int)
    upright = decode_rgb(exif_rotated_jpeg()).astype(int)
    # Orientation 6 means: rotate 90 degrees clockwise to display.
    assert upright.shape == (30, 20, 3)
    assert np.abs(upright - np.rot90(stored, k=-1)).mean() < 1.0


def test_alpha_is_composited_on_white() -> None:
    clear = Image.new("RGBA", (4, 4), (200, 0, 0, 0))
    assert (decode_rgb(encode(clear, "PNG")) == 255).all()


def test_sixteen_bit_is_scaled_not_clipped() -> None:
    pixels = decode_rgb(odd_files()["sixteen.png"])
    # A linear ramp 0..65535 becomes 0..255, not a white image.
    assert pixels.min() == 0 and pixels.max() == 255 and 100 < pixels.mean() < 155


@pytest.mark.parametrize("name", ["empty.jpg", "text.jpg", "truncated.jpg", "float.tif"])
def test_decode_rgb_raises_one_error_type(name: str) -> None:
    with pytest.raises(ImageDecodeError):
        decode_rgb(odd_files()[name])


def test_decode_rgb_refuses_too_many_pixels() -> None:
    with pytest.raises(ImageDecodeError, match="too many pixels"):
        decode_rgb(odd_files()["bomb.png"], max_pixels=MAX_PIXELS)


def test_probe_of_nothing() -> None:
    assert probe(None, MAX_PIXELS) == ImageInfo(error="empty file (0 bytes)")
