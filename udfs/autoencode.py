"""autoencode: how badly the autoencoder gives an image back, where, and its code.

Per image, at the model's input size: the mean squared error per pixel and channel (pixels in [0, 1]) of the
reconstruction, the cell of a 4 x 4 grid it reconstructs worst (a box in the image's own pixels) and that cell's
error, the reconstruction as PNG, and the code at unit length (``embeddings``, for similar-image search).

Images unlike those the model learned from reconstruct worst, but a simple image (a blank frame) comes back well
from any autoencoder however odd it is. ``unusualness`` divides the error by the square root of the image's own
complexity (the error of its 4 x 4 average, a baseline with no model; plus 0.001): measured in bench.autoencode, it
ranks odd images first better than the raw error (AUC 0.983 against 0.951 for photos, blank frames and noise among
scenes; BENCHMARKS.md).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image
from torch.nn import functional as F

from models.data import to_unit_pixels
from udfs.embed import unit_vectors
from udfs.predictor import Predictor, Prepared

# The worst region is the worst cell of a GRID x GRID grid over the image; the complexity baseline is the image's
# GRID x GRID average.
GRID = 4
# Added to the baseline's error before its square root: a flat image's baseline error is 0.
COMPLEXITY_FLOOR = 1e-3


class AutoencodePredictor(Predictor):
    """Outputs ``vector`` float32 [code_dim] at unit length, ``error_per_pixel``, ``unusualness``, ``worst_region``
    (x0, y0, w, h in the image's pixels), ``worst_error`` and ``reconstruction`` (PNG at the model's input size)."""

    outputs = ("vector", "error_per_pixel", "unusualness", "worst_region", "worst_error", "reconstruction")

    def infer(self, batch: Sequence[Prepared]) -> list[dict[str, Any]]:
        pixels = self.to_device(batch)
        with self.inference():
            out = self.model(pixels)
        vectors = unit_vectors(out["vectors"])
        seen, given = to_unit_pixels(out["reconstruction"], self.prep), to_unit_pixels(pixels, self.prep)
        squared = ((seen - given) ** 2).mean(dim=1)  # [N, S, S]
        errors = squared.flatten(1).mean(dim=1).cpu()  # [N]
        coarse = F.interpolate(F.adaptive_avg_pool2d(given, GRID), size=given.shape[-2:], mode="bilinear")
        complexity = ((given - coarse) ** 2).flatten(1).mean(dim=1).cpu()  # [N]
        unusualness = errors / (complexity + COMPLEXITY_FLOOR).sqrt()
        cells = F.adaptive_avg_pool2d(squared[:, None], GRID).flatten(1).cpu()  # [N, GRID * GRID], row-major
        images = (seen.permute(0, 2, 3, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)
        rows = []
        for i, item in enumerate(batch):
            worst = int(cells[i].argmax())
            rows.append(
                {
                    "vector": vectors[i],
                    "error_per_pixel": float(errors[i]),
                    "unusualness": float(unusualness[i]),
                    "worst_region": cell_box(worst // GRID, worst % GRID, item.size),
                    "worst_error": float(cells[i, worst]),
                    "reconstruction": _png(images[i]),
                }
            )
        return rows


def cell_box(row: int, col: int, size: tuple[int, int]) -> dict[str, int]:
    """The box (x0, y0, w, h) in an image of ``size`` (width, height) of the grid cell at ``row``, ``col``: the
    model saw the whole image squeezed to a square, so each cell is that share of each side."""
    width, height = size
    x0, x1 = col * width // GRID, (col + 1) * width // GRID
    y0, y1 = row * height // GRID, (row + 1) * height // GRID
    return {"x0": x0, "y0": y0, "w": max(1, x1 - x0), "h": max(1, y1 - y0)}


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels.squeeze(-1) if pixels.shape[-1] == 1 else pixels).save(buffer, format="PNG")
    return buffer.getvalue()
