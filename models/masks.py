"""Class masks: decoding PNG masks, their borders, and intersection-over-union scores from a confusion matrix."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

MASK_MODES = ("L", "P")  # one class id per pixel: 8-bit gray or palette indices


def decode_mask(data: bytes, size: int) -> np.ndarray:
    """A PNG class mask (one uint8 class id per pixel) -> int64 [size, size], resized with NEAREST so every pixel
    keeps a class id that was in the mask."""
    img = Image.open(io.BytesIO(data))
    if img.mode not in MASK_MODES:
        raise ValueError(f"a class mask must be a single-channel PNG ({' or '.join(MASK_MODES)}), got mode {img.mode}")
    if img.size != (size, size):
        img = img.resize((size, size), Image.NEAREST)
    return np.asarray(img, dtype=np.int64)


def mask_boundaries(masks: torch.Tensor) -> torch.Tensor:
    """Class ids [N, H, W] -> bool [N, H, W]: True where a 4-neighbour has another class (both sides of a border)."""
    border = torch.zeros_like(masks, dtype=torch.bool)
    across = masks[:, :, 1:] != masks[:, :, :-1]
    down = masks[:, 1:, :] != masks[:, :-1, :]
    border[:, :, 1:] |= across
    border[:, :, :-1] |= across
    border[:, 1:, :] |= down
    border[:, :-1, :] |= down
    return border


def confusion_matrix(predicted: torch.Tensor, truth: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Pixel counts int64 [K, K]: row = true class, column = predicted class, from class ids of any equal shapes."""
    pairs = truth.reshape(-1).long() * num_classes + predicted.reshape(-1).long()
    return torch.bincount(pairs, minlength=num_classes * num_classes).reshape(num_classes, num_classes).cpu()


def iou_per_class(confusion: torch.Tensor) -> dict[int, float]:
    """class id -> intersection / union over all pixels counted in ``confusion`` [K, K]; classes that are in neither
    the truth nor the prediction are left out."""
    intersection = confusion.diag()
    union = confusion.sum(dim=0) + confusion.sum(dim=1) - intersection
    return {k: intersection[k].item() / union[k].item() for k in range(len(confusion)) if union[k] > 0}


def mean_iou(confusion: torch.Tensor) -> float:
    """Mean of :func:`iou_per_class` over the classes present (background included)."""
    scores = iou_per_class(confusion)
    if not scores:
        raise ValueError("no pixels were counted")
    return sum(scores.values()) / len(scores)


def pixel_accuracy(confusion: torch.Tensor) -> float:
    """Share of pixels whose predicted class is the true one."""
    return confusion.diag().sum().item() / max(confusion.sum().item(), 1)
