"""Scene rendering: places 1-4 coloured shapes on a background and records pixel-exact ground truth."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from lakelens.scenes.background import make_background
from lakelens.scenes.shapes import (
    COLOURS,
    DRAWERS,
    MAX_SHAPE_ROTATION,
    SHAPES,
    SIZES,
    class_index,
    radius_range,
)

MAX_OBJECTS = 4
# A new object may hide at most this share of any earlier object's full area (cumulative).
MAX_HIDDEN = 0.3
_PLACEMENT_TRIES = 60
# Keep a gap between each shape and the image border so border pixels are background (edge padding in
# the rotate transform then never smears a shape).
_BORDER = 2.0


@dataclass(frozen=True)
class SceneObject:
    """One drawn shape.

    Attributes:
        shape: name from ``SHAPES``.
        colour: name from ``COLOURS``.
        size: name from ``SIZES``.
        cx: centre x in pixels (continuous, 0 = left edge).
        cy: centre y in pixels (continuous, 0 = top edge).
        radius: circumradius in pixels.
        angle: rotation in degrees.
    """

    shape: str
    colour: str
    size: str
    cx: float
    cy: float
    radius: float
    angle: float


@dataclass
class Scene:
    """A rendered scene and its ground truth.

    Attributes:
        image: uint8 [H, W, 3] RGB.
        class_mask: uint8 [H, W]; 0 = background, k = ``SHAPES[k - 1]``; later objects occlude earlier.
        instance: uint8 [H, W]; 0 = background, i + 1 = ``objects[i]``.
        objects: drawn objects in drawing order.
    """

    image: np.ndarray
    class_mask: np.ndarray
    instance: np.ndarray
    objects: list[SceneObject]


def object_footprint(obj: SceneObject, h: int, w: int) -> tuple[int, int, np.ndarray]:
    """Rasterises one object into a local patch.

    Args:
        obj: the object.
        h: image height (the patch is clipped to it).
        w: image width.

    Returns:
        (y0, x0, patch): bool [ph, pw] coverage whose top-left pixel is image pixel (y0, x0).
    """
    y0 = max(int(math.floor(obj.cy - obj.radius)) - 1, 0)
    x0 = max(int(math.floor(obj.cx - obj.radius)) - 1, 0)
    y1 = min(int(math.ceil(obj.cy + obj.radius)) + 2, h)
    x1 = min(int(math.ceil(obj.cx + obj.radius)) + 2, w)
    # Drawing into a small patch instead of the full canvas keeps placement retries cheap.
    patch = Image.new("L", (x1 - x0, y1 - y0), 0)
    # PIL fills in continuous coordinates (pixel i spans [i, i + 1]), the same frame as SceneObject centres.
    draw = DRAWERS[obj.shape]
    draw(ImageDraw.Draw(patch), obj.cx - x0, obj.cy - y0, obj.radius, obj.angle, 255)
    return y0, x0, np.asarray(patch) > 0


def _random_object(rng: np.random.Generator, spec: tuple[str, str, str], h: int, w: int) -> SceneObject:
    shape, colour, size = spec
    lo, hi = radius_range(size, min(h, w))
    r = float(rng.uniform(lo, hi))
    m = r + _BORDER
    angle = float(rng.uniform(-MAX_SHAPE_ROTATION, MAX_SHAPE_ROTATION))
    return SceneObject(
        shape, colour, size, cx=float(rng.uniform(m, w - m)), cy=float(rng.uniform(m, h - m)), radius=r, angle=angle
    )


def _dilate(patch: np.ndarray) -> np.ndarray:
    """4-neighbour dilation by one pixel of a bool [h, w] patch (same shape)."""
    out = patch.copy()
    out[1:] |= patch[:-1]
    out[:-1] |= patch[1:]
    out[:, 1:] |= patch[:, :-1]
    out[:, :-1] |= patch[:, 1:]
    return out


def _compose(rng: np.random.Generator, specs: Sequence[tuple[str, str, str]], h: int, w: int, keep_all: bool) -> Scene:
    """Places objects one by one, rejecting placements that hide too much of earlier ones.

    A placement is also rejected when it overlaps or touches an earlier object of the same colour, since
    the two would merge into one blob. When ``keep_all`` is False an object that finds no acceptable spot
    is dropped (the first one always fits); when True the least bad try is used.
    """
    instance = np.zeros((h, w), np.uint8)
    full_area: list[int] = []
    placed: list[tuple[SceneObject, int, int, np.ndarray]] = []
    for spec in specs:
        k = len(placed)
        # Pixels of each earlier object already hidden by the ones placed after it.
        already_hidden = np.asarray(full_area) - np.bincount(instance.ravel(), minlength=k + 1)[1:]
        same_colour = np.array([False] + [p[0].colour == spec[1] for p in placed])
        best: tuple[SceneObject, int, int, np.ndarray] | None = None
        best_cost = math.inf
        for _ in range(_PLACEMENT_TRIES):
            obj = _random_object(rng, spec, h, w)
            y0, x0, patch = object_footprint(obj, h, w)
            cost = 0.0
            if k:
                window = instance[y0 : y0 + patch.shape[0], x0 : x0 + patch.shape[1]]
                covered = np.bincount(window[patch], minlength=k + 1)[1:]
                cost = float(np.max((already_hidden + covered) / np.asarray(full_area)))
                if same_colour[window[_dilate(patch)]].any():
                    cost += 1.0
            if cost < best_cost:
                best, best_cost = (obj, y0, x0, patch), cost
            if cost <= MAX_HIDDEN:
                break
        if best is None or (best_cost > MAX_HIDDEN and not keep_all):
            continue
        obj, y0, x0, patch = best
        placed.append(best)
        full_area.append(int(patch.sum()))
        instance[y0 : y0 + patch.shape[0], x0 : x0 + patch.shape[1]][patch] = len(placed)

    image = make_background(rng, h, w).astype(np.int16)
    lut = np.zeros(len(placed) + 1, np.uint8)
    for i, (obj, _, _, _) in enumerate(placed):
        # Small per-object colour jitter so one colour name covers a range of RGB values.
        rgb = np.asarray(COLOURS[obj.colour], np.int16) + rng.integers(-15, 16, size=3)
        sel = instance == i + 1
        image[sel] = rgb
        lut[i + 1] = class_index(obj.shape)
    class_mask = lut[instance]
    # Light grain over the objects too, so they are not perfectly flat patches.
    image += rng.integers(-4, 5, size=(h, w, 1), dtype=np.int16)
    return Scene(np.clip(image, 0, 255).astype(np.uint8), class_mask, instance, [p[0] for p in placed])


def render_scene(rng: np.random.Generator, size: int) -> Scene:
    """Renders a random scene with 1 to 4 objects of random shape, colour and size.

    Args:
        rng: random stream; the scene is a pure function of its state.
        size: image side in pixels (square image).

    Returns:
        the Scene; every object keeps at least ``1 - MAX_HIDDEN`` of its pixels visible.
    """
    n = int(rng.integers(1, MAX_OBJECTS + 1))
    colours, sizes = list(COLOURS), list(SIZES)
    specs = [
        (SHAPES[rng.integers(len(SHAPES))], colours[rng.integers(len(colours))], sizes[rng.integers(len(sizes))])
        for _ in range(n)
    ]
    return _compose(rng, specs, size, size, keep_all=False)


def render_layout(rng: np.random.Generator, objects: Sequence[SceneObject], size: int) -> Scene:
    """Re-renders the same objects (shape, colour, size) at a new random layout and background.

    Args:
        rng: random stream for the new layout.
        objects: objects whose shape, colour and size are kept; positions, radii and angles are redrawn.
        size: image side in pixels.

    Returns:
        the Scene with exactly ``len(objects)`` objects in the same order (in a rare crowded layout the
        least-hiding placement is kept even if it hides more than ``MAX_HIDDEN`` of an earlier object).
    """
    specs = [(o.shape, o.colour, o.size) for o in objects]
    return _compose(rng, specs, size, size, keep_all=True)


def visible_boxes(instance: np.ndarray, n_objects: int) -> list[tuple[int, int, int, int] | None]:
    """Visible bounding box of each object from an instance map.

    Args:
        instance: uint8 [H, W]; 0 = background, i + 1 = object i.
        n_objects: number of objects.

    Returns:
        per object ``(x0, y0, w, h)`` in integer pixels, or None when no pixel of it is visible.
    """
    boxes: list[tuple[int, int, int, int] | None] = []
    for i in range(n_objects):
        sel = instance == i + 1
        rows = np.flatnonzero(sel.any(axis=1))
        if rows.size == 0:
            boxes.append(None)
            continue
        cols = np.flatnonzero(sel.any(axis=0))
        boxes.append((int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)))
    return boxes
