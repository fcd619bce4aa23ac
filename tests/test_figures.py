"""The report's pictures: boxes where the detector put them, masks coloured by class, PCA, a scatter with a legend."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from lakelens.figures import colour, legend, pca_2d, scatter, thumbnail, with_boxes, with_mask


def grey(height: int, width: int) -> np.ndarray:
    return np.full((height, width, 3), 128, np.uint8)


def test_thumbnail_keeps_the_aspect_ratio() -> None:
    image, scale = thumbnail(grey(100, 400), 200)
    assert (image.size, scale) == ((200, 50), 0.5)


def test_boxes_are_drawn_at_the_objects_place_in_the_labels_colour() -> None:
    objects = [{"label": "star", "score": 0.9, "x0": 100.0, "y0": 100.0, "w": 200.0, "h": 100.0}]
    image = np.asarray(with_boxes(grey(400, 400), objects, ["circle", "star"], 200))
    # At half scale the box spans x 50..150, y 50..100 (rows, columns below).
    assert tuple(image[75, 50]) == colour(1)  # its left edge
    assert tuple(image[100, 100]) == colour(1)  # its bottom edge
    assert tuple(image[20, 20]) == (128, 128, 128)  # outside: untouched
    assert tuple(image[75, 100]) == (128, 128, 128)  # inside: untouched


def test_mask_overlay_colours_classes_and_leaves_background() -> None:
    mask = np.zeros((40, 40), np.uint8)
    mask[:, 20:] = 2
    buffer = io.BytesIO()
    Image.fromarray(mask).save(buffer, format="PNG")
    image = np.asarray(with_mask(grey(40, 40), buffer.getvalue(), ["background", "circle", "star"], 40, alpha=0.5))
    assert tuple(image[10, 5]) == (128, 128, 128)
    expected = tuple(int(0.5 * 128 + 0.5 * c) for c in colour(2))
    assert all(abs(int(a) - b) <= 1 for a, b in zip(image[10, 30], expected, strict=True))


def test_pca_finds_the_direction_of_largest_spread() -> None:
    rng = np.random.default_rng(0)
    points = rng.standard_normal((500, 8)) * [10, 1, 1, 1, 1, 1, 1, 0.1]
    mapped = pca_2d(points)
    assert mapped.shape == (500, 2)
    assert abs(np.corrcoef(mapped[:, 0], points[:, 0])[0, 1]) > 0.99


def test_scatter_paints_each_group_in_its_colour_and_names_it() -> None:
    points = np.array([[0.0, 0.0], [1.0, 1.0]])
    image = scatter(points, [0, 1], ["circle", "star"], size=(400, 300))
    pixels = {tuple(p) for p in np.asarray(image).reshape(-1, 3)}
    assert colour(0) in pixels and colour(1) in pixels
    key = np.asarray(legend(["background", "circle"], skip=["background"]))
    assert key.shape[0] == 24 and tuple(key[10, 10]) == colour(1)
