"""The report's pictures: boxes where the detector put them, masks coloured by class, PCA, a scatter with a legend;
one colour per class name in all of them."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import numpy as np
from PIL import Image

from lakelens.figures import (
    FRAME,
    NEUTRAL,
    PALETTE,
    class_colour,
    class_colours,
    legend,
    map_xy,
    pca_2d,
    plot_area,
    scatter,
    thumbnail,
    tsne_2d,
    with_boxes,
    with_mask,
)

# The vocabularies of the bundled models: the detector's and classifier's classes sorted, the segmenter's mask order.
SHAPES = ["circle", "cross", "diamond", "hexagon", "square", "star", "triangle"]
MASK_CLASSES = ["background", "circle", "square", "triangle", "star", "hexagon", "diamond", "cross"]


def grey(height: int, width: int) -> np.ndarray:
    return np.full((height, width, 3), 128, np.uint8)


def mask_png(mask: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(mask).save(buffer, format="PNG")
    return buffer.getvalue()


def blend(colour: tuple[int, int, int]) -> tuple[int, ...]:
    """``colour`` laid at alpha 0.5 over the grey of ``grey()``."""
    return tuple(int(0.5 * 128 + 0.5 * c) for c in colour)


def near(pixel: np.ndarray, expected: tuple[int, ...]) -> bool:
    return all(abs(int(a) - b) <= 1 for a, b in zip(pixel, expected, strict=True))


def test_thumbnail_keeps_the_aspect_ratio() -> None:
    image, scale = thumbnail(grey(100, 400), 200)
    assert (image.size, scale) == ((200, 50), 0.5)


def test_boxes_are_drawn_at_the_objects_place_in_the_labels_colour() -> None:
    objects = [{"label": "star", "score": 0.9, "x0": 100.0, "y0": 100.0, "w": 200.0, "h": 100.0}]
    key = class_colours(["circle", "star"])
    image = np.asarray(with_boxes(grey(400, 400), objects, 200, key))
    # At half scale the box spans x 50..150, y 50..100 (rows, columns below).
    assert tuple(image[75, 50]) == key["star"]  # its left edge
    assert tuple(image[100, 100]) == key["star"]  # its bottom edge
    assert tuple(image[20, 20]) == (128, 128, 128)  # outside: untouched
    assert tuple(image[75, 100]) == (128, 128, 128)  # inside: untouched


def test_mask_overlay_colours_classes_and_leaves_background() -> None:
    mask = np.zeros((40, 40), np.uint8)
    mask[:, 20:] = 2
    image = np.asarray(with_mask(grey(40, 40), mask_png(mask), ["background", "circle", "star"], 40, alpha=0.5))
    assert tuple(image[10, 5]) == (128, 128, 128)
    assert near(image[10, 30], blend(class_colours(["circle", "star"])["star"]))


def test_pca_finds_the_direction_of_largest_spread() -> None:
    rng = np.random.default_rng(0)
    points = rng.standard_normal((500, 8)) * [10, 1, 1, 1, 1, 1, 1, 0.1]
    mapped = pca_2d(points)
    assert mapped.shape == (500, 2)
    assert abs(np.corrcoef(mapped[:, 0], points[:, 0])[0, 1]) > 0.99


def test_tsne_keeps_neighbours_together_and_is_repeatable() -> None:
    # Four clusters that differ along four orthogonal directions: a 2-D linear map must overlap two of them.
    rng = np.random.default_rng(0)
    centres = np.eye(16)[:4] * 10
    points = np.concatenate([c + rng.standard_normal((40, 16)) for c in centres]).astype(np.float32)
    labels = np.repeat(np.arange(4), 40)
    mapped = tsne_2d(points)
    assert mapped.shape == (160, 2) and np.array_equal(mapped, tsne_2d(points))
    nearest = np.linalg.norm(mapped[:, None] - mapped[None], axis=2)
    np.fill_diagonal(nearest, np.inf)
    assert (labels[nearest.argmin(axis=1)] == labels).mean() == 1.0
    assert tsne_2d(points[:3]).shape == (3, 2)  # the fewest points a map takes


def test_scatter_paints_each_label_in_its_colour_and_names_it() -> None:
    points = np.array([[0.0, 0.0], [1.0, 1.0]])
    key = class_colours(["circle", "star"])
    image = scatter(points, ["circle", "star"], key, size=(400, 300))
    pixels = {tuple(p) for p in np.asarray(image).reshape(-1, 3)}
    assert key["circle"] in pixels and key["star"] in pixels
    swatches = np.asarray(legend(["background", "circle"], key, skip=["background"]))
    assert swatches.shape[0] == 24 and tuple(swatches[10, 10]) == key["circle"]


def test_a_class_has_one_colour_in_boxes_masks_legends_and_the_map() -> None:
    """The issue: orange was `cross` in the box legend (sorted labels) and `circle` in the mask legend (mask order)."""
    key = class_colours([*SHAPES, *MASK_CLASSES])
    for name in SHAPES:
        boxed = [{"label": name, "score": 0.9, "x0": 100.0, "y0": 100.0, "w": 200.0, "h": 100.0}]
        boxes = np.asarray(with_boxes(grey(400, 400), boxed, 200, key))
        mask = np.zeros((40, 40), np.uint8)
        mask[:, 20:] = MASK_CLASSES.index(name)
        overlay = np.asarray(with_mask(grey(40, 40), mask_png(mask), MASK_CLASSES, 40, key, alpha=0.5))
        box_key = np.asarray(legend(SHAPES, key))  # the box legend lists the labels sorted
        mask_key = np.asarray(legend(MASK_CLASSES, key, skip=["background"]))  # mask order, background left out
        shown = scatter(np.array([[0.0, 0.0], [1.0, 1.0], [0.5, 0.2]]), [name, "star", "circle"], key)
        point = np.round(map_xy(np.array([[0.0, 0.0], [1.0, 1.0], [0.5, 0.2]]), (720, 540))[0]).astype(int)
        colour = key[name]
        assert tuple(boxes[75, 50]) == colour
        assert near(overlay[10, 30], blend(colour))
        assert tuple(box_key[11 + 16 * SHAPES.index(name), 11]) == colour
        assert tuple(mask_key[11 + 16 * (MASK_CLASSES.index(name) - 1), 11]) == colour
        assert tuple(np.asarray(shown)[point[1], point[0]]) == colour
    # Drawn on their own (no key given), figures agree too: the key of the same names is the same.
    alone = [{"label": "cross", "score": 0.9, "x0": 100.0, "y0": 100.0, "w": 200.0, "h": 100.0}]
    assert tuple(np.asarray(with_boxes(grey(400, 400), alone, 200))[75, 50]) == class_colour("cross")


def test_a_class_keeps_its_colour_whatever_other_classes_are_keyed_with_it() -> None:
    """A name's colour is its own (by hash), not its place in a list: reordering, or other names that do not
    compete for its slot, leave it; the report keys the models' whole vocabulary so that a lake's classes never
    decide it."""
    key = class_colours(SHAPES)
    assert class_colours(reversed(SHAPES)) == key
    lake_a, lake_b = ["circle", "cross", "hexagon"], ["cross", "diamond", "hexagon", "square"]
    a, b = class_colours(lake_a), class_colours(lake_b)
    for name in set(lake_a) & set(lake_b):
        assert a[name] == b[name] == class_colour(name)  # by index, "cross" was colour 1 in lake a, colour 0 in b


def test_no_two_names_of_a_key_share_a_colour_even_past_the_palette() -> None:
    for names in (SHAPES, MASK_CLASSES + ["(no label)"], [f"class {i}" for i in range(40)]):
        key = class_colours(names)
        assert set(key) == set(names) and len(set(key.values())) == len(names)
    assert set(class_colours(SHAPES).values()) <= set(PALETTE)  # a vocabulary the palette can hold stays in it
    assert class_colours(["background", "circle"])["background"] == NEUTRAL["background"]
    # One legend with all the shapes: its swatches are all different.
    swatches = np.asarray(legend(SHAPES))
    assert len({tuple(swatches[11 + 16 * row, 11]) for row in range(len(SHAPES))}) == len(SHAPES)


def test_class_colours_are_the_same_in_every_process() -> None:
    """A colour set by Python's hash() would change from run to run (its string hash is salted per process)."""
    code = "from lakelens.figures import class_colours as c; print(sorted(c(['circle', 'star', 'x', 'y']).items()))"
    seen = set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        seen.add(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                check=True).stdout)  # fmt: skip
    assert len(seen) == 1


def test_the_map_keeps_its_extreme_points_inside_the_frame() -> None:
    size = (400, 300)
    rng = np.random.default_rng(1)
    points = np.vstack([rng.standard_normal((200, 2)), [[-9, -9], [9, 9], [-9, 9], [9, -9]]])
    image = np.asarray(scatter(points, ["star"] * len(points), size=size))
    x0, y0, x1, y1 = plot_area(size)
    frame = np.concatenate([image[y0, x0 : x1 + 1], image[y1, x0 : x1 + 1], image[y0 : y1 + 1, x0],
                            image[y0 : y1 + 1, x1]])  # fmt: skip
    assert (frame == FRAME).all()  # no point drawn on the frame line
    inside = image[y0 + 1 : y1, x0 + 1 : x1]
    dots = np.argwhere((inside == class_colour("star")).all(axis=-1))
    # The corner points are drawn whole: each covers a few pixels, all off the frame, at least a pixel in from it.
    assert dots[:, 0].min() >= 1 and dots[:, 1].min() >= 1
    assert dots[:, 0].max() <= inside.shape[0] - 2 and dots[:, 1].max() <= inside.shape[1] - 2
    corners = map_xy(points, size)[-4:]
    assert ((corners > [x0, y0]) & (corners < [x1, y1])).all()
