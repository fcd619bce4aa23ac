"""classify: the top labels of each image with their scores (softmax, or sigmoid for a multi-label model)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from udfs.predictor import Predictor, Prepared


class ClassifyPredictor(Predictor):
    """Outputs ``label`` and ``score`` (the best class) and ``labels``: up to ``top_k`` {label, score}, best
    first; for a multi-label model only the classes scoring at least ``threshold`` (possibly none)."""

    outputs = ("label", "score", "labels")

    def configure(self, top_k: int = 5, threshold: float = 0.5) -> None:
        classes = self.manifest.classes
        if not classes:
            raise ValueError(f"classifier {self.manifest.name} {self.manifest.version} has no class names")
        self.top_k = max(1, min(top_k, len(classes)))
        self.threshold = threshold
        self.multi_label = bool(self.manifest.arch_args.get("multi_label", False))

    def infer(self, batch: Sequence[Prepared]) -> list[dict[str, Any]]:
        with self.inference():
            scores = self.model(self.to_device(batch))["scores"].float()
        best, ids = scores.topk(self.top_k, dim=1)
        rows = []
        for row_scores, row_ids in zip(best.cpu().tolist(), ids.cpu().tolist(), strict=True):
            ranked = [
                {"label": self.manifest.classes[i], "score": s}
                for s, i in zip(row_scores, row_ids, strict=True)
                if not self.multi_label or s >= self.threshold
            ]
            rows.append({"label": self.manifest.classes[row_ids[0]], "score": row_scores[0], "labels": ranked})
        return rows
