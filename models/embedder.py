"""Embedder (image2vec): a CNN whose L2-normalised vectors are compared by cosine, trained by metric learning.

Shapes: images float32 [N, C, H, W] -> vectors float32 [N, D] with unit L2 norm, so M(a, b) = a . b is the cosine.

Every loss takes the batch's vectors and labels (equal labels are positives: images of one class, or augmented
views of one image) and optionally a ``memory``: vectors and labels of earlier batches (detached), searched as
further positives and negatives. A query never pairs with itself.
"""

from __future__ import annotations

import torch
from torch import nn

from models.backbones import encoder

Memory = tuple[torch.Tensor, torch.Tensor]


class GeneralisedMeanPool(nn.Module):
    """Generalised-mean (GeM) pooling over H and W with a learnt exponent p: p = 1 is the average, large p tends
    to the maximum (Radenovic et al., TPAMI 2018). It lets a small bright object outweigh a large background,
    which an average cannot, so the same objects match on different backgrounds and in other places."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)))
        self.eps = eps

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features float32 [N, C, H, W] (>= 0, after a ReLU) -> float32 [N, C]."""
        return features.clamp(min=self.eps).pow(self.p).mean(dim=(2, 3)).pow(1.0 / self.p)


class Embedder(nn.Module):
    """Conv stages that halve the resolution, generalised-mean pooling, a linear projection, batch norm, L2
    normalisation.

    The batch norm centres the projections over the data, so at initialisation the vectors do not all point
    the same way (pooled ReLU features are all positive): without it hard-negative triplet training collapses
    every vector onto one point, where the loss sits at the margin.

    Args:
        dim: length of the embedding vectors.
        in_channels: 1 for gray images, 3 for RGB.
        widths: channels of each conv stage (each stage halves H and W).
        backbone: a pretrained architecture (``models.backbones``: mobilenet_v2, efficientnet_lite0) whose layers
            replace the conv stages (``widths`` is then unused).
    """

    def __init__(
        self, dim: int = 64, in_channels: int = 3, widths: tuple[int, ...] = (32, 64, 128), backbone: str | None = None
    ) -> None:
        super().__init__()
        if dim < 2:
            raise ValueError(f"dim must be >= 2, got {dim}")
        self.features, channels = encoder(in_channels, tuple(widths), backbone)
        self.pool = GeneralisedMeanPool()
        self.project = nn.Linear(channels, dim)
        self.centre = nn.BatchNorm1d(dim)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """images [N, C, H, W] -> {"vectors": float32 [N, dim], unit L2 norm}."""
        return {"vectors": self.head(self.features(images))}

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """The layers after ``features``: its maps float32 [N, C', H', W'] -> unit vectors float32 [N, dim]."""
        return nn.functional.normalize(self.centre(self.project(self.pool(features))), dim=1)


def pair_scores(
    vectors: torch.Tensor, labels: torch.Tensor, memory: Memory | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Similarities of each query to every key (the batch, then the memory) and which keys are its positives and
    negatives.

    Args:
        vectors: float32 [N, D], unit L2 norm; labels: int64 [N].
        memory: earlier vectors float32 [M, D] and their labels int64 [M], or None (M = 0).

    Returns:
        similarity float32 [N, N + M]; positives and negatives bool [N, N + M] (a query is neither to itself).
    """
    keys, key_labels = vectors, labels
    if memory is not None:
        keys, key_labels = torch.cat([vectors, memory[0]]), torch.cat([labels, memory[1]])
    same = labels[:, None] == key_labels[None, :]
    itself = torch.zeros_like(same)
    itself[:, : len(labels)] = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return vectors @ keys.T, same & ~itself, ~same


def triplet_loss_hard(
    vectors: torch.Tensor, labels: torch.Tensor, margin: float = 0.2, memory: Memory | None = None
) -> torch.Tensor:
    """Triplet hinge max(0, margin - M(q, good) + M(q, bad)) with mining among the keys.

    For each query, ``good`` is its least similar positive and ``bad`` its most similar negative: the hard
    negative the current model ranks highest. Queries without a positive or a negative are skipped.

    Args:
        vectors: float32 [N, D], unit L2 norm.
        labels: int64 [N]; equal labels are positives.
        memory: see ``pair_scores``.
    """
    similarity, positives, negatives = pair_scores(vectors, labels, memory)
    hardest_good = similarity.masked_fill(~positives, float("inf")).min(dim=1).values
    hardest_bad = similarity.masked_fill(~negatives, float("-inf")).max(dim=1).values
    usable = positives.any(dim=1) & negatives.any(dim=1)
    if not usable.any():
        return vectors.sum() * 0.0  # keeps the graph: a batch with no triplet contributes nothing
    return torch.relu(margin - hardest_good[usable] + hardest_bad[usable]).mean()


def multi_similarity_loss(
    vectors: torch.Tensor,
    labels: torch.Tensor,
    margin: float = 0.1,
    memory: Memory | None = None,
    alpha: float = 2.0,
    beta: float = 50.0,
    threshold: float = 0.5,
) -> torch.Tensor:
    """Triplet mining with multi-similarity weighting (Wang et al., CVPR 2019): a soft form of hard mining.

    Mining keeps, per query, the negatives more similar than its least similar positive minus ``margin`` and the
    positives less similar than its most similar negative plus ``margin``: the pairs that break or nearly break
    a triplet. The kept pairs are weighted by a soft-max of their similarity, so the hardest negatives weigh
    most, but the loss does not follow a single (often mislabelled) hardest pair. Per query:
    log(1 + sum_pos exp(-alpha (s - threshold))) / alpha + log(1 + sum_neg exp(beta (s - threshold))) / beta.

    Args:
        vectors: float32 [N, D], unit L2 norm.
        labels: int64 [N]; equal labels are positives.
        margin: the mining margin on cosine similarity.
        memory: see ``pair_scores``.
        alpha, beta: how sharply positives and negatives are weighted; threshold: the cosine they are weighed from.
    """
    similarity, positives, negatives = pair_scores(vectors, labels, memory)
    least_good = similarity.masked_fill(~positives, 2.0).min(dim=1, keepdim=True).values
    most_bad = similarity.masked_fill(~negatives, -2.0).max(dim=1, keepdim=True).values
    hard_bad = negatives & (similarity + margin > least_good)
    hard_good = positives & (similarity - margin < most_bad)
    # masked_fill before exp keeps gradients finite where a pair is not kept
    pull = torch.exp(-alpha * (similarity - threshold)).masked_fill(~hard_good, 0.0).sum(dim=1)
    push = torch.exp(beta * (similarity - threshold)).masked_fill(~hard_bad, 0.0).sum(dim=1)
    usable = positives.any(dim=1) & negatives.any(dim=1)
    if not usable.any():
        return vectors.sum() * 0.0
    per_query = torch.log1p(pull) / alpha + torch.log1p(push) / beta
    return per_query[usable].mean()


def contrastive_loss(
    vectors: torch.Tensor, labels: torch.Tensor, margin: float = 0.5, memory: Memory | None = None
) -> torch.Tensor:
    """Pairs option: pull every positive pair to cosine 1, push negatives below cosine ``margin``.

    Args:
        vectors: float32 [N, D], unit L2 norm.
        labels: int64 [N].
        memory: see ``pair_scores``.
    """
    similarity, positives, negatives = pair_scores(vectors, labels, memory)
    terms = torch.cat([(1 - similarity)[positives], torch.relu(similarity - margin)[negatives]])
    return terms.mean() if len(terms) else vectors.sum() * 0.0


def pair_loss(
    vectors: torch.Tensor, labels: torch.Tensor, margin: float = 0.3, memory: Memory | None = None
) -> torch.Tensor:
    """Verification pairs: for each query one same pair (a positive drawn at random, target T = 1) and one
    different pair (a negative drawn at random, T = 0), scored by the squared error of their cosine M against the
    target, a different pair only above ``margin``: T (1 - M)^2 + (1 - T) max(0, M - margin)^2.

    Unlike ``contrastive_loss`` (every pair of the batch, nearly all of them different), each query gives as many
    same as different pairs, the balance a same/different decision is judged on; the square lets a pair far from its
    target weigh more.

    Args:
        vectors: float32 [N, D], unit L2 norm; labels: int64 [N]; memory: see ``pair_scores``.
    """
    similarity, positives, negatives = pair_scores(vectors, labels, memory)
    terms = []
    for mask, same in ((positives, True), (negatives, False)):
        usable = mask.any(dim=1)
        if not usable.any():
            continue
        drawn = torch.multinomial(mask[usable].float(), 1).squeeze(1)
        cosine = similarity[usable].gather(1, drawn[:, None]).squeeze(1)
        terms.append((1 - cosine) ** 2 if same else torch.relu(cosine - margin) ** 2)
    return torch.cat(terms).mean() if terms else vectors.sum() * 0.0
