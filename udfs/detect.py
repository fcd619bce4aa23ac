"""detect: the objects in each image, boxes in the image's own pixels with label and score."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from udfs.predictor import Predictor, Prepared


class DetectPredictor(Predictor):
    """Outputs ``objects``: {label, score, x0, y0, w, h} per object found (pixels of the image as stored, upright),
    best score first, after non-maximum suppression."""

    outputs = ("objects",)

    def configure(self, min_score: float = 0.3, iou_threshold: float = 0.5, max_objects: int = 100) -> None:
        if not self.manifest.classes:
            raise ValueError(f"detector {self.manifest.name} {self.manifest.version} has no class names")
        self.min_score, self.iou_threshold, self.max_objects = min_score, iou_threshold, max_objects

    def infer(self, batch: Sequence[Prepared]) -> list[dict[str, Any]]:
        with self.inference():
            found = self.model.detect(self.to_device(batch), self.min_score, self.iou_threshold, self.max_objects)
        rows = []
        for item, objects in zip(batch, found, strict=True):
            width, height = item.size
            boxes = (objects["boxes"].float().cpu() * torch.tensor([width, height, width, height])).tolist()
            labels, scores = objects["labels"].cpu().tolist(), objects["scores"].float().cpu().tolist()
            rows.append({
                "objects": [
                    {"label": self.manifest.classes[k], "score": s, "x0": b[0], "y0": b[1], "w": b[2], "h": b[3]}
                    for b, k, s in zip(boxes, labels, scores, strict=True)
                ]
            })  # fmt: skip
        return rows
