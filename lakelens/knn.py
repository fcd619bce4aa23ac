"""Exact top-k by cosine, Spark-free: the candidates one block pair of unit vectors contributes.

A block pair is (left: images whose own top k is wanted) x (right: images to rank them against). Each left image
keeps its k best of the block; each right image with a ``floor`` (its current k-th cosine) also takes the left images
above it, so that a nightly increment updates old top-k lists from the new images alone. The matrix product in
float32 only selects: a margin of ``SELECT_MARGIN`` keeps every pair its rounding could misplace, and the selected
pairs' cosines are computed again pair by pair in float64, so the result does not depend on how the vectors were cut
into blocks (an incremental run equals a full one, bit for bit).

:func:`update_lists` applies the same rule to a whole lake in one process, for lakes small enough that every vector
and list fits in the driver (``jobs.index``).

Example:
    >>> image, neighbor, cosine = block_candidates(ids, vectors, ids, vectors, np.full(len(ids), np.inf), k=10)
    >>> lists, candidates, updated = update_lists(ids, vectors, old_lists, k=10)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from lakelens.lsh import params_id

SELECT_MARGIN = 1e-4  # far above float32 rounding of a 64-1024 term dot product of unit vectors (< 1e-6)
BLOCK_SCORES = 1 << 24  # update_lists: scores of one block of queries against every vector (64 MiB of float32)
LIST_COLUMNS = ["image_id", "neighbor_id", "rank", "cosine"]


@dataclass(frozen=True)
class ExactParams:
    """The exact top-k lists of one embedding model's vectors."""

    model: str  # the embedding model "name:version" whose vectors are ranked
    dim: int

    @property
    def params_id(self) -> str:
        return params_id("exact", asdict(self))


def kth_largest(scores: np.ndarray, k: int, rows: int = 512) -> np.ndarray:
    """Each row's k-th largest value: scores float32 [N, M], 1 <= k <= M -> [N].

    By blocks of ``rows`` rows, so that the partition's copy stays small beside a matrix of up to 2^27 scores
    (torch's topk was 3.5x faster, 28 against 98 ms for 1,000 x 11,000, but the core does not import torch)."""
    cut = scores.shape[1] - k
    parts = [np.partition(scores[i : i + rows], cut, axis=1)[:, cut] for i in range(0, len(scores), rows)]
    return np.concatenate(parts) if parts else np.zeros(0, scores.dtype)


def block_candidates(
    left_ids: np.ndarray,
    left: np.ndarray,
    right_ids: np.ndarray,
    right: np.ndarray,
    floors: np.ndarray,
    k: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image_id, neighbor_id, cosine) arrays: each left image's k best right images (more where cosines tie within
    the margin), and for each right image the left images at or above its floor (+inf: none; -inf: all).

    Args:
        left_ids, right_ids: [L] and [R] image ids; an image is never its own neighbour.
        left, right: [L, dim] and [R, dim] unit vectors.
        floors: [R] each right image's current k-th cosine.
    """
    left, right = np.asarray(left, np.float32), np.asarray(right, np.float32)
    scores = left @ right.T
    _, own_rows, own_cols = np.intersect1d(left_ids, right_ids, assume_unique=True, return_indices=True)
    scores[own_rows, own_cols] = -np.inf
    kept = min(k, scores.shape[1])
    if kept == 0 or scores.shape[0] == 0:
        empty = np.array([], dtype=object)
        return empty, empty, np.array([], np.float32)
    kth = kth_largest(scores, kept)
    row_i, row_j = np.nonzero((scores >= (kth - SELECT_MARGIN)[:, None]) & np.isfinite(scores))
    col_i = col_j = np.zeros(0, np.intp)
    if not np.isposinf(floors).all():  # a full build's queries have no lists to update
        col_i, col_j = np.nonzero((scores >= (floors - SELECT_MARGIN)[None, :]) & np.isfinite(scores))
    # Pair by pair in float64: the same two vectors give the same cosine whatever block they came in.
    row_cos = np.einsum("ij,ij->i", left[row_i].astype(np.float64), right[row_j].astype(np.float64))
    col_cos = np.einsum("ij,ij->i", left[col_i].astype(np.float64), right[col_j].astype(np.float64))
    image = np.concatenate([left_ids[row_i], right_ids[col_j]])
    neighbor = np.concatenate([right_ids[row_j], left_ids[col_i]])
    return image, neighbor, np.concatenate([row_cos, col_cos]).astype(np.float32)


def floors_of(ids: np.ndarray, lists: pd.DataFrame, k: int) -> np.ndarray:
    """Each image's floor for :func:`block_candidates` from its top-k list (``lists``: image_id, rank, cosine): its
    rank-k cosine; -inf where its list is shorter than k; +inf where it has none (a query)."""
    index = pd.Index(ids)
    floors = np.where(index.isin(lists["image_id"]), -np.inf, np.inf)
    kth = lists[lists["rank"] == k]
    at = index.get_indexer(kth["image_id"])
    floors[at[at >= 0]] = kth["cosine"].to_numpy(np.float64)[at >= 0]
    return floors


def ranked(scored: pd.DataFrame, k: int) -> pd.DataFrame:
    """(image_id, neighbor_id, cosine) -> each image's ``k`` best, ranked 1..k (ties: smaller neighbour id first),
    as ``lakelens.lsh_spark.transform_top_k`` ranks them."""
    ordered = scored.sort_values(["image_id", "cosine", "neighbor_id"], ascending=[True, False, True], kind="stable")
    rank = ordered.groupby("image_id", sort=False).cumcount() + 1
    best = ordered.assign(rank=rank.astype(np.int32))
    return best[best["rank"] <= k][LIST_COLUMNS].reset_index(drop=True)


def update_lists(ids: np.ndarray, vectors: np.ndarray, lists: pd.DataFrame, k: int) -> tuple[pd.DataFrame, int, int]:
    """Every image's top-k list after the images without a list (in ``ids``, not in ``lists``) are ranked against all
    ``vectors`` and the old lists they enter are updated (the same lists as a full build); the candidate rows
    scored; the images whose list was made or updated.

    Args:
        ids, vectors: [N] image ids and [N, dim] unit vectors of every image of the lake.
        lists: the current lists (image_id, neighbor_id, rank, cosine) of the images that have one.
    """
    ids = np.asarray(ids, dtype=object)
    vectors = np.asarray(vectors, np.float32)
    floors = floors_of(ids, lists, k)
    queries = np.flatnonzero(np.isposinf(floors))
    step = max(1, BLOCK_SCORES // max(1, len(ids)))
    found = [
        block_candidates(ids[rows], vectors[rows], ids, vectors, floors, k)
        for rows in (queries[start : start + step] for start in range(0, len(queries), step))
    ]
    scored = pd.DataFrame(
        {
            "image_id": np.concatenate([f[0] for f in found]) if found else np.array([], dtype=object),
            "neighbor_id": np.concatenate([f[1] for f in found]) if found else np.array([], dtype=object),
            "cosine": np.concatenate([f[2] for f in found]) if found else np.array([], np.float32),
        }
    )
    affected = lists["image_id"].isin(scored["image_id"])
    merged = pd.concat([scored, lists.loc[affected, ["image_id", "neighbor_id", "cosine"]]], ignore_index=True)
    merged = ranked(merged.drop_duplicates(["image_id", "neighbor_id"]), k)
    kept = lists.loc[~affected, LIST_COLUMNS]
    return pd.concat([kept, merged], ignore_index=True), len(scored), scored["image_id"].nunique()
