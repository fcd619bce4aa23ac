"""The shared decoder: header probe, decode check and RGB normalisation for every odd case."""

from __future__ import annotations

import numpy as np
import pytest
from images import ODD_EXPECTED as EXPECTED
from images import encode, exif_rotated_jpeg, odd_files, rgb
from PIL import Image

from lakelens.imaging import ImageDecodeError, ImageInfo, decode_rgb, decode_rgb_for, probe

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


def test_the_same_bad_bytes_give_the_same_error_text() -> None:
    errors = set()
    for _ in range(2):
        with pytest.raises(ImageDecodeError) as caught:
            decode_rgb(b"not an image")
        errors.add(str(caught.value))
    assert errors == {"cannot identify image file <_io.BytesIO object>"}


def test_decode_rgb_refuses_too_many_pixels() -> None:
    with pytest.raises(ImageDecodeError, match="too many pixels"):
        decode_rgb(odd_files()["bomb.png"], max_pixels=MAX_PIXELS)


def test_probe_of_nothing() -> None:
    assert probe(None, MAX_PIXELS) == ImageInfo(error="empty file (0 bytes)")


def photo(w: int, h: int) -> Image.Image:
    """A smooth 'photo': gradients and a few flat discs, as JPEG decoders see real pictures."""
    y, x = np.mgrid[0:h, 0:w]
    pixels = np.stack([x * 255 // w, y * 255 // h, (x + y) * 255 // (w + h)], axis=2).astype(np.uint8)
    for cx, cy, r, colour in ((w // 4, h // 3, h // 6, (220, 30, 30)), (2 * w // 3, h // 2, h // 5, (30, 60, 220))):
        pixels[(x - cx) ** 2 + (y - cy) ** 2 < r**2] = colour
    return Image.fromarray(pixels)


def test_a_large_jpeg_decodes_at_reduced_scale_for_a_small_model() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 1024 x 768, shown 768 x 1024
    data = encode(photo(1024, 768), "JPEG", quality=92, exif=exif.tobytes())
    reduced, size = decode_rgb_for(data, 64)
    assert size == (768, 1024)
    assert reduced.shape == (128, 96, 3)  # 1/8 scale, the most the decoder offers (both sides stay >= 64), upright
    full = decode_rgb(data)
    small = [np.asarray(Image.fromarray(a).resize((64, 64), Image.BILINEAR), np.float32) for a in (reduced, full)]
    assert np.abs(small[0] - small[1]).mean() < 2.0  # grey levels: what the model reads is the same picture


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_an_image_near_the_models_size_decodes_whole(fmt: str) -> None:
    data = encode(photo(200, 150), fmt)
    pixels, size = decode_rgb_for(data, 64)
    assert size == (200, 150) and np.array_equal(pixels, decode_rgb(data))


def test_reduced_decode_keeps_the_pixel_limit_and_the_error_type() -> None:
    with pytest.raises(ImageDecodeError, match="too many pixels"):
        decode_rgb_for(encode(photo(300, 300), "JPEG"), 32, max_pixels=1000)
    with pytest.raises(ImageDecodeError):
        decode_rgb_for(b"\xff\xd8\xff not a jpeg", 32)
