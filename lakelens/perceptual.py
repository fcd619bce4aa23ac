"""Perceptual tokens of an image: the set that near-duplicate MinHash signatures are taken over.

Recipe ``v1`` (measured in BENCHMARKS.md, "Near-duplicates") works on a 64x64 box-filtered thumbnail:

- grey structure: difference-hash bits of an 8x8 grid (horizontal and vertical) and the 63 pHash bits of a 32x32
  DCT, each as a token (bit position, bit value): robust to re-encoding, resizing and brightness on photos;
- colour layout: the hue (12 bins) of every saturated cell of 8x8 and 16x16 grids: where the coloured things are;
- background: per cell of a 4x4 grid, the tint of an unsaturated cell (or "grey") and its texture strength.

Every quantity is a ratio or a sign, so a brightness scale leaves it as it was. Tokens are small integers in
disjoint ranges per family; :func:`token_bytes` gives them the byte form that datasketch hashes.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy.fft import dctn

RECIPES = ("v1",)
SIDE = 64
_HUE_BINS = 12
_SATURATED = 0.25  # chroma (max - min) / max above which a cell counts as coloured
_TINTED = 0.03  # below this an unsaturated cell is grey
_TEXTURE_LEVELS = 8
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def thumbnail(rgb: np.ndarray) -> np.ndarray:
    """The image as float32 [64, 64, 3], box-filtered (every source pixel counts: noise averages out)."""
    return np.asarray(Image.fromarray(rgb).resize((SIDE, SIDE), Image.BOX), np.float32)


def perceptual_tokens(rgb: np.ndarray, recipe: str = "v1") -> np.ndarray:
    """The sorted distinct tokens (int64) of an RGB uint8 [H, W, 3] image under ``recipe``."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown token recipe {recipe!r}; known: {', '.join(RECIPES)}")
    thumb = thumbnail(rgb)
    grey = thumb @ _LUMA
    parts, base = [], 0
    families = (_grey_structure(grey), _colour_layout(thumb, 8), _colour_layout(thumb, 16), _background(thumb, grey))
    for tokens, size in families:
        parts.append(tokens + base)
        base += size
    return np.unique(np.concatenate(parts))


def token_bytes(tokens: np.ndarray) -> list[bytes]:
    """Tokens as the 4-byte little-endian strings that MinHash hashes."""
    return [int(t).to_bytes(4, "little") for t in tokens]


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
