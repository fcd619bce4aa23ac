"""caption: a sentence per image with its score (the geometric mean of its words' probabilities)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from models.vocabulary import Vocabulary
from udfs.predictor import Predictor, Prepared


class CaptionPredictor(Predictor):
    """Outputs ``caption`` and ``score`` in (0, 1]: exp of the mean log-probability of the caption's tokens;
    beam search with ``beam_size`` > 1, else greedy."""

    outputs = ("caption", "score")

    def configure(self, beam_size: int = 3) -> None:
        if not self.manifest.vocabulary:
            raise ValueError(f"captioner {self.manifest.name} {self.manifest.version} has no vocabulary")
        self.vocabulary = Vocabulary(self.manifest.vocabulary)
        self.beam_size = beam_size

    def infer(self, batch: Sequence[Prepared]) -> list[dict[str, Any]]:
        pixels = self.to_device(batch)
        with self.inference():
            if self.beam_size > 1:
                ids, scores = self.model.beam_search(pixels, self.beam_size)
            else:
                ids, scores = self.model.greedy(pixels)
        return [
            {"caption": self.vocabulary.decode(row), "score": math.exp(score)}
            for row, score in zip(ids.cpu().tolist(), scores.float().cpu().tolist(), strict=True)
        ]
