"""Caption grammar: colour, size, shape and relative position of the objects in a scene.

Grammar::

    caption  := phrase (relation phrase)*
    phrase   := "a" SIZE COLOUR SHAPE
    relation := "left of" | "above" | "below"

Objects are ordered left to right by centre x. Between consecutive objects A and B the relation is
"left of" when |dx| >= |dy|, otherwise "above" (A is higher on screen than B) or "below".
Example: "a small red circle left of a large blue square".
"""

from __future__ import annotations

from collections.abc import Sequence


def object_phrase(shape: str, colour: str, size: str) -> str:
    """Noun phrase for one object, e.g. "a small red circle"."""
    return f"a {size} {colour} {shape}"


def relation(a_centre: tuple[float, float], b_centre: tuple[float, float]) -> str:
    """Relation word(s) of object A to object B (A is the left one).

    Args:
        a_centre: (x, y) of A in pixels, y pointing down.
        b_centre: (x, y) of B in pixels.

    Returns:
        "left of", "above" or "below".
    """
    dx = b_centre[0] - a_centre[0]
    dy = b_centre[1] - a_centre[1]
    if abs(dx) >= abs(dy):
        return "left of"
    return "above" if dy > 0 else "below"


def make_caption(objects: Sequence[tuple[str, str, str, float, float]]) -> str:
    """Caption for a scene.

    Args:
        objects: per object ``(shape, colour, size, cx, cy)``; at least one.

    Returns:
        the caption string; a pure function of ``objects`` (ties in x keep the given order).
    """
    if not objects:
        raise ValueError("a caption needs at least one object")
    ordered = sorted(objects, key=lambda o: o[3])
    parts = [object_phrase(*ordered[0][:3])]
    for prev, cur in zip(ordered, ordered[1:], strict=False):
        parts.append(relation((prev[3], prev[4]), (cur[3], cur[4])))
        parts.append(object_phrase(*cur[:3]))
    return " ".join(parts)
