"""Scene vocabulary: shape classes with their drawing functions, colours and sizes.

Every drawing function has the signature ``draw_x(draw, cx, cy, r, angle, fill)`` and draws the
filled shape into a PIL ``ImageDraw`` so that it fits inside the circle of radius ``r`` (pixels)
around the centre ``(cx, cy)``, rotated by ``angle`` degrees (counter-clockwise on screen).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from PIL import ImageDraw

# Radii below are in pixels for a REFERENCE_SIZE x REFERENCE_SIZE image; they scale linearly with the side.
REFERENCE_SIZE = 128

Fill = int | tuple[int, int, int]
Drawer = Callable[[ImageDraw.ImageDraw, float, float, float, float, Fill], None]


def _polygon(cx: float, cy: float, radii: Sequence[float], angles: Sequence[float], rot: float) -> list:
    """Vertices ``(x, y)`` of a polygon given per-vertex polar coordinates (degrees, y pointing up)."""
    pts = []
    for rad, ang in zip(radii, angles, strict=True):
        a = math.radians(ang + rot)
        # Screen y grows downwards, so subtract the sine to keep "counter-clockwise" visual rotation.
        pts.append((cx + rad * math.cos(a), cy - rad * math.sin(a)))
    return pts


def _regular(
    draw: ImageDraw.ImageDraw, cx: float, cy: float, r: float, sides: int, start: float, angle: float, fill: Fill
) -> None:
    """Draws a regular polygon with ``sides`` vertices on the circle of radius ``r``."""
    angles = [start + 360.0 * k / sides for k in range(sides)]
    draw.polygon(_polygon(cx, cy, [r] * sides, angles, angle), fill=fill)


def draw_circle(draw: ImageDraw.ImageDraw, cx: float, cy: float, r: float, angle: float, fill: Fill) -> None:
    """Draws a filled circle (rotation has no visible effect)."""
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)


def draw_square(draw: ImageDraw.ImageDraw, cx: float, cy: float, r: float, angle: float, fill: Fill) -> None:
    """Draws a filled axis-aligned (before rotation) square inscribed in the radius-``r`` circle."""
    _regular(draw, cx, cy, r, 4, 45.0, angle, fill)


def draw_triangle(draw: ImageDraw.ImageDraw, cx: float, cy: float, r: float, angle: float, fill: Fill) -> None:
    """Draws a filled equilateral triangle pointing up."""
    _regular(draw, cx, cy, r, 3, 90.0, angle, fill)


def draw_star(draw: ImageDraw.ImageDraw, cx: float, cy: float, r: float, angle: float, fill: Fill) -> None:
    """Draws a filled five-pointed star."""
    radii = [r if k % 2 == 0 else 0.45 * r for k in range(10)]
    angles = [90.0 + 36.0 * k for k in range(10)]
    draw.polygon(_polygon(cx, cy, radii, angles, angle), fill=fill)


def draw_hexagon(draw: ImageDraw.ImageDraw, cx: float, cy: float, r: float, angle: float, fill: Fill) -> None:
    """Draws a filled regular hexagon with flat top and bottom."""
    _regular(draw, cx, cy, r, 6, 0.0, angle, fill)


def draw_diamond(draw: ImageDraw.ImageDraw, cx: float, cy: float, r: float, angle: float, fill: Fill) -> None:
    """Draws a filled rhombus, taller than wide so it cannot be mistaken for a rotated square."""
    draw.polygon(_polygon(cx, cy, [0.6 * r, r, 0.6 * r, r], [0.0, 90.0, 180.0, 270.0], angle), fill=fill)


def draw_cross(draw: ImageDraw.ImageDraw, cx: float, cy: float, r: float, angle: float, fill: Fill) -> None:
    """Draws a filled plus sign with arms of width ``0.7 * r``."""
    a, b = 0.35 * r, 0.95 * r
    corners = [
        (b, a),
        (a, a),
        (a, b),
        (-a, b),
        (-a, a),
        (-b, a),
        (-b, -a),
        (-a, -a),
        (-a, -b),
        (a, -b),
        (a, -a),
        (b, -a),
    ]
    radii = [math.hypot(x, y) for x, y in corners]
    angles = [math.degrees(math.atan2(y, x)) for x, y in corners]
    draw.polygon(_polygon(cx, cy, radii, angles, angle), fill=fill)


DRAWERS: dict[str, Drawer] = {
    "circle": draw_circle,
    "square": draw_square,
    "triangle": draw_triangle,
    "star": draw_star,
    "hexagon": draw_hexagon,
    "diamond": draw_diamond,
    "cross": draw_cross,
}

# Shape classes; mask class index of SHAPES[k] is k + 1 (0 is background).
SHAPES: tuple[str, ...] = tuple(DRAWERS)
# Class of each value of a scene's class mask.
SCENE_MASK_CLASSES: tuple[str, ...] = ("background", *SHAPES)

# Saturated, well separated hues so that muted backgrounds never compete with them.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 35, 35),
    "orange": (245, 135, 15),
    "yellow": (240, 220, 30),
    "green": (35, 175, 55),
    "cyan": (20, 205, 215),
    "blue": (35, 75, 225),
    "purple": (150, 50, 205),
}

# Radius range (pixels at REFERENCE_SIZE) per size class.
SIZES: dict[str, tuple[float, float]] = {
    "small": (8.0, 13.0),
    "large": (18.0, 26.0),
}

# Maximum rotation (degrees) applied to a shape; kept small so shapes stay recognisable.
MAX_SHAPE_ROTATION = 12.0


def class_index(shape: str) -> int:
    """Mask class index of a shape name.

    Args:
        shape: a name from ``SHAPES``.

    Returns:
        int in 1..len(SHAPES).
    """
    return SHAPES.index(shape) + 1


def radius_range(size: str, image_size: int) -> tuple[float, float]:
    """Radius range in pixels of a size class for a square image of side ``image_size``.

    Args:
        size: a name from ``SIZES``.
        image_size: image side in pixels.

    Returns:
        (low, high) radius in pixels.
    """
    lo, hi = SIZES[size]
    scale = image_size / REFERENCE_SIZE
    return lo * scale, hi * scale
