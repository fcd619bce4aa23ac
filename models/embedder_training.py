"""Training and evaluation of the embedder on lake snapshots with a ``label`` column; Spark-free.

Training: each batch holds every row's clean image and, with ``views``, one augmented view of it (same label);
equal labels are positives. The loss mines inside the batch and, after a warm-up, in a memory of the last
batches' vectors (cross-batch memory, Wang et al., CVPR 2020): rare positives, such as the few images of one
near-duplicate group in a large table, then meet far more often than inside one batch.

Evaluation: recall@1 by cosine nearest neighbour. Rows with a negative label are distractors: searched over,
never queries, never a match.

CUDA when present, the CPU otherwise (the losses run in float32); seeds fixed; one log line per epoch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import torch

from models.augment import Augment, AugmentedViews
from models.data import Preprocessing, table_loader
from models.embedder import (
    Embedder,
    Memory,
    contrastive_loss,
    multi_similarity_loss,
    pair_loss,
    triplet_loss_hard,
)
from models.train_loop import Optimiser, TrainSettings, seed_everything

log = logging.getLogger("lakelens.train")
# The false-accept rate the verification threshold is chosen for (jobs.search --verify).
VERIFY_FAR = 0.01

LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "multi_similarity": multi_similarity_loss,
    "triplet": triplet_loss_hard,
    "contrastive": contrastive_loss,
    "pair": pair_loss,
}


class VectorMemory:
    """The vectors (detached) and labels of the last ``size`` training images, newest first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.vectors: torch.Tensor | None = None
        self.labels: torch.Tensor | None = None

    def add(self, vectors: torch.Tensor, labels: torch.Tensor) -> None:
        """Push vectors float32 [N, D] and labels int64 [N]; the oldest fall out past ``size``."""
        if self.vectors is None:
            self.vectors, self.labels = vectors.detach()[: self.size], labels[: self.size]
            return
        self.vectors = torch.cat([vectors.detach(), self.vectors])[: self.size]
        self.labels = torch.cat([labels, self.labels])[: self.size]

    def contents(self) -> Memory | None:
        """(vectors float32 [M, D], labels int64 [M]), or None while empty."""
        return None if self.vectors is None else (self.vectors, self.labels)


def train_embedder(
    model: Embedder,
    train_url: str,
    prep: Preprocessing,
    settings: TrainSettings,
    device: torch.device,
    loss: str = "multi_similarity",
    margin: float | None = None,
    views: bool = True,
    augment: Augment | None = None,
    memory_size: int = 4096,
    memory_after: int = 100,
) -> list[dict[str, float]]:
    """Metric learning in place on the table at ``train_url`` (``bytes``, ``label`` int64: equal labels are
    positives; give each row without a group a label of its own, unique in the table).

    Where groups are small (near-duplicates: 2-4 rows in thousands), write their rows next to each other, groups
    in random order: the loader's shuffling buffer then keeps them within a few batches, where the memory finds
    them. Never so for class labels (a whole class would arrive at once).

    Args:
        loss: "multi_similarity" (triplet mining with soft weighting of the hard pairs), "triplet" (the hinge
            with the hardest positive and negative), "contrastive" (all pairs) or "pair" (one same and one different
            pair per image: same/different verification).
        margin: the loss's margin; None for its default.
        views: add one augmented view per row, a positive of its clean image.
        augment: how a view is made (default ``Augment()``).
        memory_size: images kept in the cross-batch memory (0: mine within the batch only).
        memory_after: optimiser steps before the memory is searched, so it does not hold the first, fast
            changing vectors.

    Returns:
        per epoch {loss, rows (images seen, views included), images_per_s}.
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {loss!r}")
    loss_fn = LOSSES[loss]
    margin_arg = {} if margin is None else {"margin": margin}
    seed_everything(settings.seed)
    model.to(device).train()
    optimiser = Optimiser(model, settings, device)
    memory, steps, history = VectorMemory(memory_size), 0, []
    for epoch in range(settings.epochs):
        started, seen, total = time.perf_counter(), 0, 0.0
        targets = AugmentedViews(prep, augment or Augment(), seed=settings.seed + epoch) if views else None
        with table_loader(
            train_url, prep, settings.batch_size, targets, seed=settings.seed + epoch, workers=settings.workers
        ) as loader:
            for batch in loader:
                images, labels = batch["pixels"], batch["label"]
                if views:
                    images, labels = torch.cat([images, batch["view"]]), torch.cat([labels, labels])
                images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
                vectors = model(images)["vectors"].float()
                searched = memory.contents() if memory_size and steps >= memory_after else None
                value = loss_fn(vectors, labels, memory=searched, **margin_arg)
                optimiser.step(value)
                if memory_size:
                    memory.add(vectors, labels)
                steps += 1
                seen += len(vectors)
                total += value.item() * len(vectors)
        optimiser.end_epoch()
        stats = {
            "loss": total / max(seen, 1),
            "rows": float(seen),
            "images_per_s": seen / (time.perf_counter() - started),
        }
        history.append(stats)
        log.info("epoch %d/%d: %s loss %.4f, %.0f images/s", epoch + 1, settings.epochs, loss, stats["loss"],
                 stats["images_per_s"])  # fmt: skip
    return history


@torch.no_grad()
def evaluate_embedder(
    model: Embedder, url: str, prep: Preprocessing, device: torch.device, batch_size: int = 256
) -> dict[str, float]:
    """recall@1 by cosine nearest neighbour over the table at ``url`` (see ``recall_at_1``): every row is
    searched; rows with a label >= 0 that another row shares are the queries, rows with a negative label are
    distractors only.

    Returns:
        {"recall_at_1", "queries", "rows": every row searched}; without queries only "queries" (0) and "rows".
    """
    model.to(device).eval()
    vectors, labels = [], []
    with table_loader(url, prep, batch_size, shuffle=False) as loader:
        for batch in loader:
            vectors.append(model(batch["pixels"].to(device))["vectors"].float().cpu())
            labels.append(batch["label"])
    if not vectors:
        raise ValueError(f"no rows to evaluate in {url}")
    vectors, labels = torch.cat(vectors), torch.cat(labels)
    queries = len(query_rows(labels))
    if not queries:
        log.warning("recall@1 not measured on %s: no two rows share a label", url)
        return {"queries": 0.0, "rows": float(len(labels))}
    return {
        "recall_at_1": recall_at_1(vectors, labels),
        **verification_scores(vectors, labels),
        "queries": float(queries),
        "rows": float(len(labels)),
    }


def verification_scores(
    vectors: torch.Tensor, labels: torch.Tensor, false_accepts: float = VERIFY_FAR, max_rows: int = 4000
) -> dict[str, float]:
    """Same-or-different verification on every pair of rows (of the first ``max_rows`` with a label >= 0): a pair
    is the same when the labels are equal, and is called same when its cosine is at least the threshold.

    Returns:
        {"verify_auc": ROC AUC of the cosine, "verify_threshold": the least cosine that accepts at most
        ``false_accepts`` of the different pairs, "verify_tar": the share of same pairs it accepts, "verify_pairs"};
        empty when the rows have no same or no different pair.
    """
    keep = labels >= 0
    vectors, labels = vectors[keep][:max_rows].double(), labels[keep][:max_rows]
    upper = torch.triu_indices(len(labels), len(labels), offset=1)
    cosines = (vectors @ vectors.T)[upper[0], upper[1]]
    same = labels[upper[0]] == labels[upper[1]]
    if same.all() or not same.any():
        return {}
    different = cosines[~same].sort().values
    # The threshold sits just above the different pair at the (1 - far) quantile: at most ``far`` of them reach it.
    allowed = int(false_accepts * len(different))
    threshold = float(different[len(different) - allowed - 1]) + 1e-6
    return {
        "verify_auc": roc_auc(cosines, same),
        "verify_threshold": threshold,
        "verify_tar": float((cosines[same] >= threshold).double().mean()),
        "verify_pairs": float(len(cosines)),
    }


def roc_auc(scores: torch.Tensor, positive: torch.Tensor) -> float:
    """The probability that a random positive scores above a random negative (ties count half): the area under the
    ROC curve, by the rank-sum (Mann-Whitney) formula. scores float [P], positive bool [P]."""
    order = scores.argsort()
    ranks = torch.empty_like(scores)
    ranks[order] = torch.arange(1, len(scores) + 1, dtype=scores.dtype)
    # Tied scores share the mean of their ranks.
    values, inverse, counts = torch.unique(scores, return_inverse=True, return_counts=True)
    mean_rank = torch.zeros_like(values).scatter_add_(0, inverse, ranks) / counts
    ranks = mean_rank[inverse]
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def query_rows(labels: torch.Tensor) -> torch.Tensor:
    """Indices of the rows that are recall queries: a label >= 0 that another row shares."""
    _, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    return torch.nonzero((labels >= 0) & (counts[inverse] > 1)).flatten()


def recall_at_1(vectors: torch.Tensor, labels: torch.Tensor, chunk: int = 2048) -> float:
    """Share of queries whose nearest other row by cosine has the same label.

    Args:
        vectors: float32 [N, D], unit L2 norm.
        labels: int64 [N]; a row with a label >= 0 that another row shares is a query; a negative label marks a
            distractor, which is searched over but is no query, and never a match (its label differs from every
            query's). A row whose label no other row has is searched over too: it has nothing to find.
    """
    queries = query_rows(labels)
    if not len(queries):
        raise ValueError("recall@1 needs two rows or more with one label >= 0 (negative labels are distractors)")
    hits = 0
    for start in range(0, len(queries), chunk):
        rows = queries[start : start + chunk]
        similarity = vectors[rows] @ vectors.T
        similarity[torch.arange(len(rows)), rows] = float("-inf")
        hits += (labels[similarity.argmax(dim=1)] == labels[rows]).sum().item()
    return hits / len(queries)
