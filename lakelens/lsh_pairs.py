"""A run's near-duplicate pairs among every signature of a small lake, in one process (numpy), Spark-free.

The candidates are those of the banding, as the Spark paths find them (``lakelens.lsh_spark``): two images sharing
a bucket (the same key in one band), at least one of them new; in a bucket of more than ``hot_bucket_size`` images
only its leader (smallest image_id) and each other member. Each candidate is verified by its estimated Jaccard.
Equal keys are equal runs of ``r`` hash values, so the buckets come from the signatures themselves: no bucket rows
are read.

Example:
    >>> found = night_pairs(ids, signatures, is_new, b=51, r=5, threshold=0.62, hot_bucket_size=1000)
    >>> found.pairs        # image_id_a < image_id_b, similarity
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lakelens.lsh import MINHASH_DTYPE, minhash_band_keys

VERIFY_CHUNK = 1 << 16  # candidate pairs compared at once: 64 Ki x num_perm hash values per side


@dataclass(frozen=True)
class NightPairs:
    """The verified pairs (image_id_a < image_id_b, similarity as float32), how many candidates were verified, and
    the hot buckets (band, key, size, leader) the new images are in."""

    pairs: pd.DataFrame
    candidates: int
    hot: pd.DataFrame


def night_pairs(
    ids: np.ndarray,
    signatures: np.ndarray,
    is_new: np.ndarray,
    b: int,
    r: int,
    threshold: float,
    hot_bucket_size: int,
) -> NightPairs:
    """The candidate pairs of the new images (``is_new``) among every image of ``ids`` (unique) with its MinHash
    ``signatures`` [N, num_perm], banded ``b`` x ``r``, verified at ``threshold``."""
    ids = np.asarray(ids, dtype=object)
    signatures = np.asarray(signatures, MINHASH_DTYPE)
    is_new = np.asarray(is_new, bool)
    rank = np.empty(len(ids), np.int64)
    rank[np.argsort(ids, kind="stable")] = np.arange(len(ids))  # the order of the ids, for pairs and leaders
    codes, hot = [], []
    for band in range(b):
        left, right, hot_rows = _band_pairs(_band_labels(signatures, band, r), is_new, rank, hot_bucket_size)
        low, high = np.minimum(rank[left], rank[right]), np.maximum(rank[left], rank[right])
        codes.append(low * len(ids) + high)
        hot += [(band, minhash_band_keys(signatures[m : m + 1], b, r)[0][band], size, ids[m]) for m, size in hot_rows]
    pairs = np.unique(np.concatenate(codes)) if codes else np.zeros(0, np.int64)
    by_rank = np.argsort(rank)
    a, z = by_rank[pairs // max(len(ids), 1)], by_rank[pairs % max(len(ids), 1)]
    similarity = _similarity(signatures, a, z)
    kept = similarity.astype(np.float64) >= threshold  # float32 as Spark casts it, compared as a double
    return NightPairs(
        pd.DataFrame({"image_id_a": ids[a[kept]], "image_id_b": ids[z[kept]], "similarity": similarity[kept]}),
        len(pairs),
        pd.DataFrame(hot, columns=["band", "key", "size", "leader"]),
    )


def _band_labels(signatures: np.ndarray, band: int, r: int) -> np.ndarray:
    """Each signature's bucket in ``band``: equal labels for equal runs of the band's ``r`` hash values."""
    values = np.ascontiguousarray(signatures[:, band * r : (band + 1) * r])
    keys = values.view(np.dtype((np.void, values.itemsize * r))).ravel()
    return np.unique(keys, return_inverse=True)[1].ravel()


def _band_pairs(
    labels: np.ndarray, is_new: np.ndarray, rank: np.ndarray, hot_bucket_size: int
) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """(left, right) rows of one band's candidate pairs, in either order and possibly twice, and its hot buckets as
    (leader row, size): the buckets holding a new image pair it with every member, or only with their leader where
    they hold more than ``hot_bucket_size`` images."""
    touched = np.isin(labels, np.unique(labels[is_new]))
    members = np.flatnonzero(touched)
    members = members[np.argsort(labels[members], kind="stable")]
    grouped = labels[members]
    starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]]) if len(members) else np.zeros(0, np.int64)
    sizes = np.diff(np.r_[starts, len(members)])
    group = np.repeat(np.arange(len(starts)), sizes)
    # Ordinary buckets: each new member with every member.
    new_at = np.flatnonzero(is_new[members] & (sizes[group] <= hot_bucket_size))
    counts = sizes[group[new_at]]
    left = np.repeat(members[new_at], counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    right = members[np.repeat(starts[group[new_at]], counts) + offsets]
    lefts, rights, hot = [left], [right], []
    # Hot buckets: the leader with each member, where either is new.
    for start, size in zip(starts[sizes > hot_bucket_size], sizes[sizes > hot_bucket_size], strict=True):
        bucket = members[start : start + size]
        leader = bucket[np.argmin(rank[bucket])]
        partners = bucket if is_new[leader] else bucket[is_new[bucket]]
        lefts.append(np.full(len(partners), leader))
        rights.append(partners)
        hot.append((leader, int(size)))
    left, right = np.concatenate(lefts), np.concatenate(rights)
    distinct = left != right
    return left[distinct], right[distinct], hot


def _similarity(signatures: np.ndarray, a: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Estimated Jaccard (share of equal hash values) of each pair of rows, as float32."""
    equal = np.zeros(len(a), np.int64)
    for start in range(0, len(a), VERIFY_CHUNK):
        part = slice(start, start + VERIFY_CHUNK)
        equal[part] = np.count_nonzero(signatures[a[part]] == signatures[z[part]], axis=1)
    return (equal / max(signatures.shape[1], 1)).astype(np.float32)
