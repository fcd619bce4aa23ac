"""Pictures for the report, drawn with Pillow: thumbnails, detection boxes, mask overlays and a 2-D embedding map."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

# Twelve colours that stay apart on photos and on each other (Tableau's palette, a common choice for categories).
PALETTE = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
    (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207), (255, 187, 120), (152, 223, 138),
)  # fmt: skip


def colour(index: int) -> tuple[int, int, int]:
    return PALETTE[index % len(PALETTE)]


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def thumbnail(rgb: np.ndarray, side: int) -> tuple[Image.Image, float]:
    """The image scaled so that its longer side is ``side`` pixels, and the scale applied."""
    image = Image.fromarray(rgb)
    scale = side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.BILINEAR), scale


def with_boxes(rgb: np.ndarray, objects: Sequence[dict], labels: Sequence[str], side: int) -> Image.Image:
    """A thumbnail with each detected object's box and "label score" drawn in its label's colour.

    ``objects`` carry ``label``, ``score`` and ``x0, y0, w, h`` in the image's pixels; ``labels`` fixes the colours.
    """
    image, scale = thumbnail(rgb, side)
    draw = ImageDraw.Draw(image)
    for obj in objects:
        box = [obj["x0"] * scale, obj["y0"] * scale, (obj["x0"] + obj["w"]) * scale, (obj["y0"] + obj["h"]) * scale]
        hue = colour(labels.index(obj["label"]) if obj["label"] in labels else len(labels))
        draw.rectangle(box, outline=hue, width=2)
        text = f"{obj['label']} {obj['score']:.2f}"
        left, top = box[0], max(0.0, box[1] - 11)
        draw.rectangle(draw.textbbox((left, top), text), fill=hue)
        draw.text((left, top), text, fill=(255, 255, 255))
    return image


def with_mask(rgb: np.ndarray, mask_png: bytes, classes: Sequence[str], side: int, alpha: float = 0.5) -> Image.Image:
    """A thumbnail with the segmentation mask laid over it: each class but ``background`` in its colour."""
    image, _ = thumbnail(rgb, side)
    mask = np.asarray(Image.open(io.BytesIO(mask_png)).resize(image.size, Image.NEAREST))
    lut = np.array([colour(k) for k in range(256)], np.float32)
    base = np.asarray(image, np.float32)
    painted = mask != (classes.index("background") if "background" in classes else 255)
    blended = np.where(painted[..., None], (1 - alpha) * base + alpha * lut[mask], base)
    return Image.fromarray(blended.astype(np.uint8))


def legend(names: Sequence[str], skip: Sequence[str] = ()) -> Image.Image:
    """Colour swatches with their names, one a row: ``names[i]`` in ``colour(i)``, leaving out ``skip``."""
    shown = [(i, name) for i, name in enumerate(names) if name not in skip]
    image = Image.new("RGB", (160, 16 * len(shown) + 8), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for row, (i, name) in enumerate(shown):
        draw.rectangle([6, 6 + 16 * row, 16, 16 + 16 * row], fill=colour(i))
        draw.text((22, 5 + 16 * row), name, fill=(0, 0, 0))
    return image


def pca_2d(vectors: np.ndarray) -> np.ndarray:
    """The first two principal components of the rows of ``vectors`` ([n, d] -> [n, 2])."""
    centred = vectors - vectors.mean(axis=0)
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    return centred @ components[:2].T


def scatter(points: np.ndarray, groups: Sequence[int], names: Sequence[str], size: tuple[int, int] = (720, 540)):
    """A scatter plot of 2-D ``points`` coloured by group index, with a legend of ``names``."""
    width, height = size
    image = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(image)
    plot = (10, 10, width - 180, height - 10)
    low, high = points.min(axis=0), points.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    xy = (points - low) / span * [plot[2] - plot[0], plot[3] - plot[1]] + [plot[0], plot[1]]
    draw.rectangle(plot, outline=(200, 200, 200))
    for (x, y), group in zip(xy, groups, strict=True):
        draw.ellipse([x - 2.5, y - 2.5, x + 2.5, y + 2.5], fill=colour(group))
    image.paste(legend(names), (width - 170, 10))
    return image
