"""embed: an L2-normalised float32 vector per image, compared by cosine (a dot product)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from udfs.predictor import Predictor, Prepared


class EmbedPredictor(Predictor):
    """Outputs ``vector``: float32 [dim], unit length."""

    outputs = ("vector",)

    def infer(self, batch: Sequence[Prepared]) -> list[dict[str, Any]]:
        with self.inference():
            vectors = self.model(self.to_device(batch))["vectors"]
        return [{"vector": v} for v in unit_vectors(vectors)]


def unit_vectors(vectors: torch.Tensor) -> np.ndarray:
    """Model vectors [N, D] at unit length, float32 on the CPU. Half precision on a GPU: normalised in float32 so
    every vector is unit length to float32 accuracy."""
    vectors = vectors.float()
    return (vectors / vectors.norm(dim=1, keepdim=True).clamp(min=1e-12)).cpu().numpy()
