"""Whether an image has colour to speak of: grey (every pixel without chroma: a grey mode, or RGB with R = G = B up
to compression noise), tinted (one hue throughout, any strength: sepia, cyanotype), or colour. The colourise task
colours the first two kinds and leaves colour images alone.

Measured on the image's chroma (Cb and Cr of JPEG's YCbCr, in 8-bit units) at up to 256 pixels a side: a kind is
decided by the 99th percentile, so that a few stray pixels (a coloured date stamp, JPEG ringing) do not make a grey
scan "colour".

Example:
    >>> colour_kind(decode_rgb(data))
    'grey'
"""

from __future__ import annotations

import numpy as np

KINDS = ("grey", "tinted", "colour")
# Chroma (8-bit Cb/Cr units) under which a pixel counts as grey: JPEG's chroma noise on a grey scan stays under 3.
GREY_CHROMA = 4.0
# A tinted image's clearly chromatic mid-tone pixels (chroma over twice GREY_CHROMA, luma 48 to 208) keep one hue to
# within this many degrees (99th percentile): a sepia filter's chroma grows with lightness but its hue stays, except
# in highlights, where its red channel clips first and the hue turns yellow. Measured on 120 COCO val photos: their
# sepia versions (the usual sepia matrix, JPEG 85) 3-15 degrees in the mid tones (up to 23 over all tones, which
# left 48 of them "colour"); of the colour photos 11 are within 20 (some of them grey photos, which are "grey"
# before this test): a photo of browns alone can pass for sepia.
TINT_DEGREES = 20.0
# A tint colours the whole tonal range: at least this share of the mid-tone pixels (luma 48 to 208) carries chroma.
# A grey scene or photo with coloured objects of one hue (a red car on a grey street) has one hue too, but on some of
# its pixels only, and is colour.
TINT_SHARE = 0.5
_MID_TONES = (48.0, 208.0)
_SIDE = 256


def chroma(rgb: np.ndarray) -> np.ndarray:
    """float32 [H, W, 2]: each pixel's (Cb, Cr) chroma, 0 for grey, from uint8 RGB [H, W, 3]."""
    pixels = rgb.astype(np.float32)
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    return np.stack([-0.168736 * r - 0.331264 * g + 0.5 * b, 0.5 * r - 0.418688 * g - 0.081312 * b], axis=-1)


def colour_kind(rgb: np.ndarray) -> str:
    """ "grey", "tinted" or "colour" (:data:`KINDS`) of uint8 RGB [H, W, 3]."""
    step = max(1, -(-max(rgb.shape[:2]) // _SIDE))
    small = rgb[::step, ::step]
    ab = chroma(small).reshape(-1, 2)
    strength = np.hypot(ab[:, 0], ab[:, 1])
    if np.percentile(strength, 99) <= GREY_CHROMA:
        return "grey"
    luma = (small.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).reshape(-1)
    mid = (luma >= _MID_TONES[0]) & (luma <= _MID_TONES[1])
    if mid.any() and (strength[mid] > GREY_CHROMA).mean() < TINT_SHARE:
        return "colour"
    chromatic = strength > 2 * GREY_CHROMA
    tinted = ab[chromatic & mid] if (chromatic & mid).any() else ab[chromatic]
    if len(tinted) == 0:  # faint chroma only, above the grey bar in places
        return "tinted"
    hues = np.arctan2(tinted[:, 1], tinted[:, 0])
    mean = np.arctan2(np.sin(hues).mean(), np.cos(hues).mean())
    off = np.degrees(np.abs(np.angle(np.exp(1j * (hues - mean)))))
    return "tinted" if np.percentile(off, 99) <= TINT_DEGREES else "colour"
