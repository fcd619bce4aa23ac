"""segment: each image's class mask, as PNG bytes at the image's own size, and the share of pixels per class."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from udfs.predictor import Predictor, Prepared


class SegmentPredictor(Predictor):
    """Outputs ``mask`` (8-bit PNG, value k = ``mask_classes[k]``, the model's mask resized with nearest
    neighbours to the image's width and height), ``mask_classes``, and ``fractions``: class -> share of the
    image's pixels, for the classes present."""

    outputs = ("mask", "mask_classes", "fractions")

    def configure(self) -> None:
        classes = self.manifest.classes
        if not classes or len(classes) > 256:
            raise ValueError(
                f"segmenter {self.manifest.name} {self.manifest.version} needs 1-256 class names in its manifest "
                f"(one 8-bit mask value each), has {len(classes)}"
            )

    def infer(self, batch: Sequence[Prepared]) -> list[dict[str, Any]]:
        with self.inference():
            logits = self.model(self.to_device(batch))["logits"]
        masks = logits.argmax(dim=1).to(torch.uint8).cpu().numpy()
        return [self._row(mask, item.size) for mask, item in zip(masks, batch, strict=True)]

    def _row(self, mask: np.ndarray, size: tuple[int, int]) -> dict[str, Any]:
        full = Image.fromarray(mask).resize(size, Image.NEAREST)
        counts = np.bincount(np.asarray(full).ravel(), minlength=len(self.manifest.classes))
        total = counts.sum()
        buffer = io.BytesIO()
        full.save(buffer, format="PNG")
        return {
            "mask": buffer.getvalue(),
            "mask_classes": list(self.manifest.classes),
            "fractions": {self.manifest.classes[k]: float(n / total) for k, n in enumerate(counts) if n},
        }
