"""Seeded photometric and geometric augmentation of one image: the "augmented views" the embedder learns to match.

Module-level and numpy/PIL only, so petastorm worker threads can pickle it. Every draw comes from the
``np.random.Generator`` passed in, so a seed reproduces a view. The changes mimic the near-duplicate copies the
embedder must find (a crop, a resize, a small rotation, brightness, JPEG) and never change hue: colour is part
of what an image shows.
"""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageEnhance

from lakelens.imaging import decode_rgb
from models.data import Preprocessing, to_tensor_array


@dataclass(frozen=True)
class Augment:
    """How far a view may stray from its image.

    Args:
        min_area: smallest share of the image a random crop keeps (1.0: no cropping).
        max_aspect: the crop's aspect ratio lies in [1 / max_aspect, max_aspect].
        flip: mirror left-right with probability 1/2.
        max_rotate: degrees, uniform in [-max_rotate, max_rotate].
        brightness: factor uniform in [1 - brightness, 1 + brightness]; the same range for contrast.
        jpeg_probability: chance of a JPEG round trip at quality 30..90.
    """

    min_area: float = 0.6
    max_aspect: float = 1.33
    flip: bool = True
    max_rotate: float = 10.0
    brightness: float = 0.3
    jpeg_probability: float = 0.3

    def __post_init__(self) -> None:
        if not 0 < self.min_area <= 1 or self.max_aspect < 1 or not 0 <= self.brightness < 1:
            raise ValueError(f"augmentation needs 0 < min_area <= 1, max_aspect >= 1, 0 <= brightness < 1: {self}")

    def __call__(self, img: Image.Image, rng: np.random.Generator) -> Image.Image:
        """A random view of ``img`` (mode L or RGB, any size), of the same size and mode."""
        width, height = img.size
        img = img.crop(self._crop_box(width, height, rng)).resize((width, height), Image.BILINEAR)
        if self.flip and rng.random() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        if self.max_rotate:
            # Fill the corners with the mean colour so they do not read as a dark frame.
            fill = tuple(int(v) for v in np.asarray(img).reshape(-1, len(img.getbands())).mean(0))
            angle = rng.uniform(-self.max_rotate, self.max_rotate)
            img = img.rotate(angle, resample=Image.BILINEAR, fillcolor=fill if len(fill) > 1 else fill[0])
        if self.brightness:
            img = ImageEnhance.Brightness(img).enhance(rng.uniform(1 - self.brightness, 1 + self.brightness))
            img = ImageEnhance.Contrast(img).enhance(rng.uniform(1 - self.brightness, 1 + self.brightness))
        if rng.random() < self.jpeg_probability:
            buffer = io.BytesIO()
            img.save(buffer, format="JPEG", quality=int(rng.integers(30, 91)))
            img = Image.open(buffer)
            img.load()
        return img

    def _crop_box(self, width: int, height: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of a crop covering min_area..1 of the image within the aspect range."""
        area = rng.uniform(self.min_area, 1.0) * width * height
        aspect = np.exp(rng.uniform(-np.log(self.max_aspect), np.log(self.max_aspect)))
        crop_w = int(round(min(width, np.sqrt(area * aspect))))
        crop_h = int(round(min(height, np.sqrt(area / aspect))))
        left = int(rng.integers(0, width - crop_w + 1))
        top = int(rng.integers(0, height - crop_h + 1))
        return left, top, left + crop_w, top + crop_h


@dataclass(frozen=True)
class AugmentedViews:
    """Targets for ``models.data.table_loader`` that add, beside the clean ``pixels``, one augmented ``view`` of
    each row's image: float32 [C, size, size], normalised as ``pixels``; and its ``label`` (int64). The two
    views of an image share the label, so they are positives for each other.

    The view of an image depends only on ``seed`` and the image bytes (not on thread scheduling); change the
    seed each epoch for fresh views.
    """

    prep: Preprocessing
    augment: Augment = Augment()
    seed: int = 0
    columns: tuple[str, ...] = ("label",)

    def fields(self) -> list[tuple[str, Any, tuple[int, ...]]]:
        return [("label", np.int64, ()), ("view", np.float32, (self.prep.channels, self.prep.size, self.prep.size))]

    def decode(self, rows: pd.DataFrame) -> dict[str, list]:
        return {"label": list(rows["label"].astype(np.int64)), "view": [self.view(data) for data in rows["bytes"]]}

    def view(self, data: bytes) -> np.ndarray:
        """Image bytes -> float32 [C, size, size]: resized to the input size, augmented, normalised."""
        img = Image.fromarray(decode_rgb(data))
        img = (img.convert("L") if self.prep.channels == 1 else img).resize((self.prep.size,) * 2, Image.BILINEAR)
        img = self.augment(img, np.random.default_rng([self.seed, zlib.crc32(data)]))
        # A lossless round trip, so views are normalised by the one decoding path that makes ``pixels``.
        buffer = io.BytesIO()
        img.save(buffer, format="PNG")
        return to_tensor_array(buffer.getvalue(), self.prep)
