"""Muted, textured scene backgrounds built with numpy.

Backgrounds are low-saturation on purpose: shapes use saturated colours, so a model has to find
them by colour and outline rather than by guessing where the texture ends.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

BACKGROUND_FAMILIES: tuple[str, ...] = ("noise", "stripes", "checker", "gradient", "blotches")

# Hue directions for tints; a muted colour is grey plus a small step towards one of them.
_HUES = np.array([[1, 0, 0], [1, 0.5, 0], [1, 1, 0], [0, 1, 0], [0, 1, 1], [0, 0, 1], [1, 0, 1]], dtype=np.float32)


def muted_colour(rng: np.random.Generator) -> np.ndarray:
    """A random low-saturation colour.

    Args:
        rng: random stream.

    Returns:
        float32 [3] RGB in 0..255.
    """
    value = rng.uniform(0.3, 0.8)
    saturation = rng.uniform(0.0, 0.2)
    hue = _HUES[rng.integers(len(_HUES))]
    return (255.0 * value * (1.0 - saturation + saturation * hue)).astype(np.float32)


def _pair(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two muted colours with a visible but modest brightness difference."""
    c1 = muted_colour(rng)
    delta = rng.uniform(25, 60) * rng.choice([-1.0, 1.0])
    c2 = np.clip(c1 + delta + rng.uniform(-10, 10, 3), 40, 225).astype(np.float32)
    return c1, c2


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinate grids, float32 [H, 1] and [1, W]."""
    return np.arange(h, dtype=np.float32)[:, None], np.arange(w, dtype=np.float32)[None, :]


def _mix(c1: np.ndarray, c2: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Blends two colours by weight ``t`` (float [H, W] in 0..1) into float32 [H, W, 3]."""
    return c1 + (c2 - c1) * t[..., None]


def _noise(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Cloudy value noise between two muted colours; float32 [H, W, 3]."""
    c1, c2 = _pair(rng)
    gh, gw = rng.integers(3, 12, size=2)
    coarse = Image.fromarray((rng.random((gh, gw)) * 255).astype(np.uint8))
    # Bicubic upsampling of a tiny random grid gives smooth cloudy texture at any output size.
    t = np.asarray(coarse.resize((w, h), Image.BICUBIC), dtype=np.float32) / 255.0
    return _mix(c1, c2, t)


def _stripes(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Soft stripes at a random angle and period; float32 [H, W, 3]."""
    c1, c2 = _pair(rng)
    yy, xx = _grid(h, w)
    theta = rng.uniform(0, np.pi)
    period = rng.uniform(0.05, 0.25) * max(h, w)
    phase = np.sin(2 * np.pi * (xx * np.cos(theta) + yy * np.sin(theta)) / period + rng.uniform(0, 2 * np.pi))
    # Soft-edged stripes: a squashed sine so the pattern is neither a flat wash nor hard bars.
    t = 0.5 + 0.5 * np.tanh(2.0 * phase)
    return _mix(c1, c2, t)


def _checker(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Low-contrast checkerboard with a random cell size; float32 [H, W, 3]."""
    c1, c2 = _pair(rng)
    yy, xx = _grid(h, w)
    cell = rng.uniform(0.06, 0.2) * max(h, w)
    t = ((np.floor(yy / cell) + np.floor(xx / cell)) % 2).astype(np.float32)
    # Lower contrast than other families: hard edges already draw the eye.
    return _mix(c1, c2, 0.6 * t)


def _gradient(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Linear gradient at a random angle; float32 [H, W, 3]."""
    c1, c2 = _pair(rng)
    yy, xx = _grid(h, w)
    theta = rng.uniform(0, 2 * np.pi)
    proj = xx * np.cos(theta) + yy * np.sin(theta)
    t = (proj - proj.min()) / max(float(proj.max() - proj.min()), 1.0)
    return _mix(c1, c2, t)


def _blotches(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Gaussian blotches of muted colours on a muted base; float32 [H, W, 3]."""
    img = np.broadcast_to(muted_colour(rng), (h, w, 3)).astype(np.float32)
    yy, xx = _grid(h, w)
    for _ in range(rng.integers(3, 8)):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        sigma = rng.uniform(0.08, 0.25) * max(h, w)
        weight = 0.8 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
        img += (muted_colour(rng) - img) * weight[..., None]
    return img


_FAMILY_FUNCS = {
    "noise": _noise,
    "stripes": _stripes,
    "checker": _checker,
    "gradient": _gradient,
    "blotches": _blotches,
}


def make_background(rng: np.random.Generator, h: int, w: int, family: str | None = None) -> np.ndarray:
    """Renders a random muted textured background.

    Args:
        rng: random stream.
        h: height in pixels.
        w: width in pixels.
        family: one of ``BACKGROUND_FAMILIES``; random when None.

    Returns:
        uint8 [H, W, 3] RGB image.
    """
    if family is None:
        family = BACKGROUND_FAMILIES[rng.integers(len(BACKGROUND_FAMILIES))]
    img = _FAMILY_FUNCS[family](rng, h, w)
    # Fine grain on every family so no background is perfectly flat (flat areas compress unrealistically).
    img = img + rng.normal(0.0, rng.uniform(2.0, 6.0), size=(h, w, 1)).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)
