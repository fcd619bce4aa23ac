"""Near-duplicate transforms of a rendered scene.

Each transform maps the image together with its class mask and instance map (masks always with NEAREST
resampling, so they stay label maps and boxes can be recomputed from the transformed instance map) and
the object centres. Geometry choices:

* crop keeps the cropped size (no resize back), so mask pixels are never resampled;
* rotate keeps the input size and fills the uncovered corners by edge replication (no black corners).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

TRANSFORM_KINDS: tuple[str, ...] = ("jpeg", "resize", "crop", "brightness", "rotate")


@dataclass
class Transformed:
    """Result of a transform.

    Attributes:
        image: uint8 [H', W', 3] RGB.
        class_mask: uint8 [H', W'].
        instance: uint8 [H', W'].
        centres: float64 [N, 2] object centres (x, y) in the new pixel frame.
        name: short description, e.g. "jpeg_q45", "resize_0.75", "rotate_-3.5".
        encoded: exact file bytes when the transform is itself an encoding (JPEG re-encode), else None;
            ``image`` is then the decoded content of these bytes.
    """

    image: np.ndarray
    class_mask: np.ndarray
    instance: np.ndarray
    centres: np.ndarray
    name: str
    encoded: bytes | None = None


def _resample(arr: np.ndarray, size: tuple[int, int], resample: int) -> np.ndarray:
    """Resizes a uint8 [H, W] or [H, W, 3] array to ``size`` = (width, height)."""
    return np.asarray(Image.fromarray(arr).resize(size, resample))


def jpeg_reencode(
    rng: np.random.Generator, image: np.ndarray, class_mask: np.ndarray, instance: np.ndarray, centres: np.ndarray
) -> Transformed:
    """Re-encodes as JPEG at a random quality in 30..70; geometry is unchanged."""
    quality = int(rng.integers(30, 71))
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    decoded = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    return Transformed(decoded, class_mask, instance, centres, f"jpeg_q{quality}", buf.getvalue())


def resize(
    rng: np.random.Generator, image: np.ndarray, class_mask: np.ndarray, instance: np.ndarray, centres: np.ndarray
) -> Transformed:
    """Resizes by a random scale in 0.6..0.9 or 1.1..1.5; the output has the new size."""
    # Scales too close to 1 would be a no-op after rounding the output size.
    scale = round(float(rng.uniform(0.6, 0.9) if rng.random() < 0.5 else rng.uniform(1.1, 1.5)), 2)
    h, w = instance.shape
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    return Transformed(
        _resample(image, (new_w, new_h), Image.BILINEAR),
        _resample(class_mask, (new_w, new_h), Image.NEAREST),
        _resample(instance, (new_w, new_h), Image.NEAREST),
        centres * np.array([new_w / w, new_h / h]),
        f"resize_{scale:.2f}",
    )


def crop(
    rng: np.random.Generator, image: np.ndarray, class_mask: np.ndarray, instance: np.ndarray, centres: np.ndarray
) -> Transformed:
    """Crops each side by 50-100 % of a random fraction in 0.03..0.10; the output keeps the crop size."""
    frac = round(float(rng.uniform(0.03, 0.10)), 2)
    h, w = instance.shape
    left, right = (int(round(rng.uniform(0.5, 1.0) * frac * w)) for _ in range(2))
    top, bottom = (int(round(rng.uniform(0.5, 1.0) * frac * h)) for _ in range(2))
    window = (slice(top, h - bottom), slice(left, w - right))
    return Transformed(
        np.ascontiguousarray(image[window]),
        np.ascontiguousarray(class_mask[window]),
        np.ascontiguousarray(instance[window]),
        centres - np.array([left, top]),
        f"crop_{frac:.2f}",
    )


def brightness(
    rng: np.random.Generator, image: np.ndarray, class_mask: np.ndarray, instance: np.ndarray, centres: np.ndarray
) -> Transformed:
    """Scales brightness by 1 + s with |s| in 0.15..0.30; geometry is unchanged."""
    shift = round(float(rng.uniform(0.15, 0.30) * rng.choice([-1.0, 1.0])), 2)
    out = np.clip(image.astype(np.float32) * (1.0 + shift) + 0.5, 0, 255).astype(np.uint8)
    return Transformed(out, class_mask, instance, centres, f"brightness_{shift:+.2f}")


def rotate(
    rng: np.random.Generator, image: np.ndarray, class_mask: np.ndarray, instance: np.ndarray, centres: np.ndarray
) -> Transformed:
    """Rotates about the image centre by 2..6 degrees either way; same size, corners edge-filled."""
    degrees = round(float(rng.uniform(2.0, 6.0) * rng.choice([-1.0, 1.0])), 1)
    h, w = instance.shape
    theta = math.radians(degrees)
    # Padding by the largest displacement of any pixel means every output pixel samples real (padded) data.
    pad = int(math.ceil(math.hypot(h, w) / 2 * abs(theta))) + 2

    def turn(arr: np.ndarray, resample: int) -> np.ndarray:
        widths = ((pad, pad), (pad, pad)) + (((0, 0),) if arr.ndim == 3 else ())
        big = Image.fromarray(np.pad(arr, widths, mode="edge"))
        return np.asarray(big.rotate(degrees, resample=resample))[pad : pad + h, pad : pad + w].copy()

    # PIL rotates counter-clockwise on screen: with y down, (dx, dy) -> (dx cos + dy sin, -dx sin + dy cos).
    d = centres - np.array([w / 2, h / 2])
    cos, sin = math.cos(theta), math.sin(theta)
    moved = np.stack([d[:, 0] * cos + d[:, 1] * sin, -d[:, 0] * sin + d[:, 1] * cos], axis=1)
    return Transformed(
        turn(image, Image.BILINEAR),
        turn(class_mask, Image.NEAREST),
        turn(instance, Image.NEAREST),
        moved + np.array([w / 2, h / 2]),
        f"rotate_{degrees:.1f}",
    )


_FUNCS = {"jpeg": jpeg_reencode, "resize": resize, "crop": crop, "brightness": brightness, "rotate": rotate}


def apply_transform(
    kind: str,
    rng: np.random.Generator,
    image: np.ndarray,
    class_mask: np.ndarray,
    instance: np.ndarray,
    centres: np.ndarray,
) -> Transformed:
    """Applies one near-duplicate transform.

    Args:
        kind: one of ``TRANSFORM_KINDS``.
        rng: random stream for the transform's parameters.
        image: uint8 [H, W, 3] RGB.
        class_mask: uint8 [H, W].
        instance: uint8 [H, W].
        centres: float [N, 2] object centres (x, y) in pixels.

    Returns:
        the Transformed result.
    """
    centres = np.asarray(centres, dtype=np.float64).reshape(-1, 2)
    return _FUNCS[kind](rng, image, class_mask, instance, centres)
