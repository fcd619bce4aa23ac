"""Embedder (image2vec): a CNN whose L2-normalised vectors are compared by cosine, trained by metric learning.

Shapes: images float32 [N, C, H, W] -> vectors float32 [N, D] with unit L2 norm, so M(a, b) = a . b is the cosine.
"""

from __future__ import annotations

import torch
from torch import nn

from models.blocks import downsampling_stages


class Embedder(nn.Module):
    """Conv stages that halve the resolution, global average pooling, a linear projection, L2 normalisation.

    Args:
        dim: length of the embedding vectors.
        in_channels: 1 for gray images, 3 for RGB.
        widths: channels of each conv stage (each stage halves H and W).
    """

    def __init__(self, dim: int = 64, in_channels: int = 3, widths: tuple[int, ...] = (32, 64, 128)) -> None:
        super().__init__()
        if dim < 2:
            raise ValueError(f"dim must be >= 2, got {dim}")
        self.features, channels = downsampling_stages(in_channels, widths)
        self.project = nn.Linear(channels, dim)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """images [N, C, H, W] -> {"vectors": float32 [N, dim], unit L2 norm}."""
        pooled = self.features(images).mean(dim=(2, 3))
        return {"vectors": nn.functional.normalize(self.project(pooled), dim=1)}


def triplet_loss_hard(vectors: torch.Tensor, labels: torch.Tensor, margin: float = 0.2) -> torch.Tensor:
    """Triplet hinge max(0, margin - M(q, good) + M(q, bad)) with mining inside the batch.

    For each query, ``good`` is its least similar positive (same label, not itself) and ``bad`` its most similar
    negative: the hard negative the current model ranks highest. Queries without a positive or a negative in the
    batch are skipped.

    Args:
        vectors: float32 [N, D], unit L2 norm.
        labels: int64 [N]; equal labels are positives (augmented views of one image share a label).
    """
    similarity = vectors @ vectors.T
    same = labels[:, None] == labels[None, :]
    itself = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    positives, negatives = same & ~itself, ~same
    hardest_good = similarity.masked_fill(~positives, float("inf")).min(dim=1).values
    hardest_bad = similarity.masked_fill(~negatives, float("-inf")).max(dim=1).values
    usable = positives.any(dim=1) & negatives.any(dim=1)
    if not usable.any():
        return vectors.sum() * 0.0  # keeps the graph: a batch with no triplet contributes nothing
    return torch.relu(margin - hardest_good[usable] + hardest_bad[usable]).mean()


def contrastive_loss(vectors: torch.Tensor, labels: torch.Tensor, margin: float = 0.5) -> torch.Tensor:
    """Pairs option: pull every positive pair to cosine 1, push negatives below cosine ``margin``.

    Args:
        vectors: float32 [N, D], unit L2 norm.
        labels: int64 [N].
    """
    similarity = vectors @ vectors.T
    same = labels[:, None] == labels[None, :]
    off_diagonal = ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    pull = (1 - similarity)[same & off_diagonal]
    push = torch.relu(similarity - margin)[~same]
    terms = torch.cat([pull, push])
    return terms.mean() if len(terms) else vectors.sum() * 0.0
