"""Perceptual tokens of an image: the set that near-duplicate MinHash signatures are taken over.

Recipe ``v1`` (measured in BENCHMARKS.md, "Near-duplicates") works on a 64x64 box-filtered thumbnail:

- grey structure: difference-hash bits of an 8x8 grid (horizontal and vertical) and the 63 pHash bits of a 32x32
  DCT, each as a token (bit position, bit value): robust to re-encoding, resizing and brightness on photos;
- colour layout: the hue (12 bins) of every saturated cell of 8x8 and 16x16 grids: where the coloured things are;
- background: per cell of a 4x4 grid, the tint of an unsaturated cell (or "grey") and its texture strength.

Recipe ``v2`` (the default; measured by ``bench/near_dup_quality.py``) keeps v1's grey bits and adds crop-robust
families whose positions are bins of a *warped* grid: cells grow towards the border (an asinh warp), because a crop
of up to 10 % per side moves content by little near the centre and by most near the edges, where the bins are wide:

- objects: the hue of every strongly saturated 4x4-pixel cell, by warped 4x4 and 6x6 bin; the family is repeated
  (distinct ids per copy) up to at least 64 tokens, so a few small coloured objects on a large patterned
  background weigh as much as the background (synthetic scenes differ mostly in their objects);
- background: the tint (or "grey") of every other cell, by the same bins;
- edges: the orientation (4 bins) of every clear grey gradient, by the same bins; flat regions emit nothing;
- warped difference hash: dHash bits of a 9x9 warped-grid grey image.

Every quantity is a ratio or a sign, so a brightness scale leaves it as it was. Tokens are small integers in
disjoint ranges per family; :func:`token_bytes` gives them the byte form that datasketch hashes.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy.fft import dctn

RECIPES = ("v1", "v2")
SIDE = 64
_HUE_BINS = 12
_SATURATED = 0.25  # chroma (max - min) / max above which a cell counts as coloured
_TINTED = 0.03  # below this an unsaturated cell is grey
_TEXTURE_LEVELS = 8
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)
# v2
_FINE = 16  # cells (4x4 pixels of the thumbnail) that objects, tints and edges are measured on
_BINS = (4, 6)  # warped position grids the v2 families are counted on (two: a bin change in one is caught by the other)
_WARP = 0.2  # asinh warp scale of the position grids (smaller: stronger growth of the bins towards the border)
_OBJECT = 0.4  # chroma above which a v2 cell is part of an object
_OBJECT_WEIGHT = 64  # least number of object tokens, reached by repeating the family
_MAX_COPIES = 64
_EDGE = 0.08  # central grey difference over mean grey above which a v2 cell has an edge
_ORIENTATIONS = 4
_DHASH_WARP = 0.12


def thumbnail(rgb: np.ndarray) -> np.ndarray:
    """The image as float32 [64, 64, 3], box-filtered (every source pixel counts: noise averages out)."""
    return np.asarray(Image.fromarray(rgb).resize((SIDE, SIDE), Image.BOX), np.float32)


def perceptual_tokens(rgb: np.ndarray, recipe: str = "v2") -> np.ndarray:
    """The sorted distinct tokens (int64) of an RGB uint8 [H, W, 3] image under ``recipe``."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown token recipe {recipe!r}; known: {', '.join(RECIPES)}")
    thumb = thumbnail(rgb)
    grey = thumb @ _LUMA
    families = _families_v1(thumb, grey) if recipe == "v1" else _families_v2(thumb, grey)
    parts, base = [], 0
    for tokens, size in families:
        parts.append(tokens + base)
        base += size
    return np.unique(np.concatenate(parts))


def token_bytes(tokens: np.ndarray) -> list[bytes]:
    """Tokens as the 4-byte little-endian strings that MinHash hashes."""
    return [int(t).to_bytes(4, "little") for t in tokens]


def _families_v1(thumb: np.ndarray, grey: np.ndarray) -> list[tuple[np.ndarray, int]]:
    return [_grey_structure(grey), _colour_layout(thumb, 8), _colour_layout(thumb, 16), _background(thumb, grey)]


def _families_v2(thumb: np.ndarray, grey: np.ndarray) -> list[tuple[np.ndarray, int]]:
    cells = _cells(thumb, _FINE)
    hue, chroma = _hue_and_chroma(cells)
    orientation, edged = _edges(cells @ _LUMA)
    families = []
    for n in _BINS:
        bins = _warped_bins(_FINE, n, _WARP)
        pos = bins[:, None] * n + bins[None, :]
        families.append(_repeated((pos * _HUE_BINS + hue)[chroma > _OBJECT], n * n * _HUE_BINS, _OBJECT_WEIGHT))
        tint = np.where(chroma > _TINTED, hue, _HUE_BINS)  # _HUE_BINS: grey
        families.append(((pos * (_HUE_BINS + 1) + tint)[chroma <= _OBJECT], n * n * (_HUE_BINS + 1)))
        families.append(((pos * _ORIENTATIONS + orientation)[edged], n * n * _ORIENTATIONS))
    return [_grey_structure(grey), *families, _warped_dhash(grey, 8)]


def _warped_bins(n_fine: int, n: int, warp: float) -> np.ndarray:
    """The bin (of ``n``) of each of ``n_fine`` cell centres along an axis, bins growing towards the border."""
    x = (np.arange(n_fine) + 0.5) / n_fine - 0.5
    u = np.arcsinh(x / warp) / np.arcsinh(0.5 / warp)  # -1..1; a scale about the centre is near a shift in u
    return np.minimum((u + 1) / 2 * n, n - 1).astype(np.int64)


def _repeated(tokens: np.ndarray, size: int, weight: int) -> tuple[np.ndarray, int]:
    """``tokens`` in enough copies (distinct ids) to make at least ``weight`` tokens; the id range is fixed."""
    tokens = np.unique(tokens)
    copies = max(1, min(_MAX_COPIES, -(-weight // max(1, tokens.size))))
    return (tokens[None, :] + size * np.arange(copies)[:, None]).ravel(), size * _MAX_COPIES


def _edges(grey_cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per cell, the gradient orientation bin and whether the gradient is clear (a dead zone: flat cells emit
    nothing, so noise and plain backgrounds do not flip tokens)."""
    gx, gy = np.zeros_like(grey_cells), np.zeros_like(grey_cells)
    gx[:, 1:-1] = grey_cells[:, 2:] - grey_cells[:, :-2]
    gy[1:-1, :] = grey_cells[2:, :] - grey_cells[:-2, :]
    strength = np.hypot(gx, gy) / (grey_cells.mean() + 1e-3)  # relative: a brightness scale leaves it
    angle = (np.degrees(np.arctan2(gy, gx)) + 180.0) % 180.0
    return (angle // (180.0 / _ORIENTATIONS)).astype(np.int64) % _ORIENTATIONS, strength > _EDGE


def _warped_dhash(grey: np.ndarray, n: int, n_fine: int = 32) -> tuple[np.ndarray, int]:
    """Difference-hash bits, as (position, bit) tokens, of the grey image averaged over a warped (n+1)^2 grid."""
    k = SIDE // n_fine
    fine = grey.reshape(n_fine, k, n_fine, k).mean(axis=(1, 3))
    bins = _warped_bins(n_fine, n + 1, _DHASH_WARP)
    index = (bins[:, None] * (n + 1) + bins[None, :]).ravel()
    sums = np.bincount(index, fine.ravel(), (n + 1) ** 2) / np.bincount(index, minlength=(n + 1) ** 2)
    a = sums.reshape(n + 1, n + 1)
    bits = np.concatenate([(a[:-1, 1:] > a[:-1, :-1]).ravel(), (a[1:, :-1] > a[:-1, :-1]).ravel()])
    return 2 * np.arange(bits.size) + bits, 2 * bits.size


def _grey_structure(grey: np.ndarray) -> tuple[np.ndarray, int]:
    img = Image.fromarray(grey)
    small = np.asarray(img.resize((9, 9), Image.BOX), np.float32)
    dhash = np.concatenate([(small[:-1, 1:] > small[:-1, :-1]).ravel(), (small[1:, :-1] > small[:-1, :-1]).ravel()])
    dct = dctn(np.asarray(img.resize((32, 32), Image.BOX), np.float64), norm="ortho")[:8, :8].ravel()[1:]
    bits = np.concatenate([dhash, dct > np.median(dct)])
    return 2 * np.arange(bits.size) + bits, 2 * bits.size


def _cells(thumb: np.ndarray, n: int) -> np.ndarray:
    k = SIDE // n
    return thumb.reshape(n, k, n, k, -1).mean(axis=(1, 3))


def _hue_and_chroma(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    top, bottom = cells.max(-1), cells.min(-1)
    chroma = (top - bottom) / (top + 1e-3)
    r, g, b = cells[..., 0], cells[..., 1], cells[..., 2]
    hue = (np.degrees(np.arctan2(np.sqrt(3) * (g - b), 2 * r - g - b)) + 360.0) % 360.0
    return (hue // (360.0 / _HUE_BINS)).astype(np.int64) % _HUE_BINS, chroma


def _colour_layout(thumb: np.ndarray, n: int) -> tuple[np.ndarray, int]:
    hue, chroma = _hue_and_chroma(_cells(thumb, n))
    cell = np.arange(n * n).reshape(n, n)
    coloured = chroma > _SATURATED
    return (cell * _HUE_BINS + hue)[coloured], n * n * _HUE_BINS


def _background(thumb: np.ndarray, grey: np.ndarray, n: int = 4) -> tuple[np.ndarray, int]:
    hue, chroma = _hue_and_chroma(_cells(thumb, n))
    cell = np.arange(n * n).reshape(n, n)
    tint = np.where(chroma > _TINTED, hue, _HUE_BINS)  # _HUE_BINS: grey
    tints = (cell * (_HUE_BINS + 1) + tint)[chroma <= _SATURATED]
    k = SIDE // n
    blocks = grey.reshape(n, k, n, k)
    texture = blocks.std(axis=(1, 3)) / (blocks.mean(axis=(1, 3)) + 1e-3)
    level = np.clip(np.floor(np.log2(texture + 1e-4) + _TEXTURE_LEVELS), 0, _TEXTURE_LEVELS - 1).astype(np.int64)
    textures = n * n * (_HUE_BINS + 1) + (cell * _TEXTURE_LEVELS + level).ravel()
    return np.concatenate([tints, textures]), n * n * (_HUE_BINS + 1 + _TEXTURE_LEVELS)
