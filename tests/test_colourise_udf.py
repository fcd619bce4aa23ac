"""The colourise predict core without Spark: grey and tinted images in colour at their own size with their own
lightness, colour images left alone, and odd images (one pixel, all black, huge, corrupt) as rows."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image, ImageOps

from lakelens.imaging import decode_rgb
from models.colour import rgb_to_lab
from models.colouriser import ResidualColouriser
from models.data import Preprocessing
from models.registry import Manifest, check_runs
from udfs.colourise import ColourisePredictor
from udfs.predictor import predict_frame


def encoded(img: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt)
    return buffer.getvalue()


def gradient(width: int, height: int) -> Image.Image:
    y, x = np.mgrid[0:height, 0:width]
    return Image.fromarray(((x * 7 + y * 3) % 256).astype(np.uint8), "L")


@pytest.fixture(scope="module")
def predictor() -> ColourisePredictor:
    torch.manual_seed(0)
    arch_args = {"widths": [8, 16]}
    prep = Preprocessing(32, channels=1, mean=(0.0,), std=(1.0,))
    manifest = Manifest.new("tiny-colour", "colouriser_residual", arch_args, preprocessing=prep.to_manifest())
    model = ResidualColouriser(widths=(8, 16)).eval()
    check_runs(model, manifest)
    return ColourisePredictor(model, manifest, torch.device("cpu"), batch_size=4)


def test_grey_and_tinted_images_come_back_in_rgb_at_their_size_with_their_lightness(predictor) -> None:
    colourful = Image.fromarray(np.stack([np.full((20, 30), 200), np.tile(np.arange(30) * 8, (20, 1)),
                                          np.full((20, 30), 40)], axis=-1).astype(np.uint8))  # fmt: skip
    images = {
        "grey": encoded(gradient(37, 23)),
        "sepia": encoded(ImageOps.colorize(gradient(50, 40), black=(40, 26, 13), white=(255, 240, 220)), "JPEG"),
        "colour": encoded(colourful),
        "pixel": encoded(Image.new("L", (1, 1), 90)),
        "black": encoded(Image.new("RGB", (40, 30))),
        "huge": encoded(Image.fromarray(np.asarray(gradient(3000, 2000)).astype(np.uint16) * 257)),  # 16-bit grey
        "broken": b"\x89PNG\r\n\x1a\n cut short",
    }
    frame = pd.DataFrame({"image_id": list(images), "bytes": list(images.values())})
    out = predict_frame(predictor, frame).set_index("image_id")
    assert out.index.tolist() == list(images)  # rows in = rows out, in order
    assert out.loc["grey", "kind"] == "grey" and out.loc["sepia", "kind"] == "tinted"
    assert out.loc["colour", "kind"] == "colour" and out.loc["colour", "png"] is None
    assert out.loc["colour", "error"] is None
    assert out.loc["broken", "png"] is None and out.loc["broken", "error"].startswith("decode failed")
    for image_id, size in [("grey", (37, 23)), ("sepia", (50, 40)), ("pixel", (1, 1)), ("black", (40, 30)),
                           ("huge", (3000, 2000))]:  # fmt: skip
        assert out.loc[image_id, "error"] is None
        result = Image.open(io.BytesIO(out.loc[image_id, "png"]))
        assert result.mode == "RGB" and result.size == size
        original = decode_rgb(images[image_id])
        lightness = [rgb_to_lab(torch.tensor(np.asarray(i)).permute(2, 0, 1)[None].float() / 255)[0, 0]
                     for i in (result, original)]  # fmt: skip
        difference = (lightness[0] - lightness[1]).abs()
        assert float(difference.mean()) < 1.0 and float(difference.max()) < 6.0, image_id  # L kept; gamut clips
