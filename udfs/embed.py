"""embed: an L2-normalised float32 vector per image, compared by cosine (a dot product)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from udfs.predictor import Predictor, Prepared


class EmbedPredictor(Predictor):
    """Outputs ``vector``: float32 [dim], unit length."""

    outputs = ("vector",)

    def infer(self, batch: Sequence[Prepared]) -> list[dict[str, Any]]:
        with self.inference():
            vectors = self.model(self.to_device(batch))["vectors"]
        # Half precision on a GPU: normalise again in float32 so every vector is unit length to float32 accuracy.
        vectors = vectors.float()
        vectors = vectors / vectors.norm(dim=1, keepdim=True).clamp(min=1e-12)
        return [{"vector": v} for v in vectors.cpu().numpy()]
