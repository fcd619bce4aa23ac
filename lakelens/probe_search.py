"""Many queries against many vectors through SimHash buckets, in numpy: each query is scored only against the
images that share a bucket it probes (``lakelens.lsh.simhash_probe_codes``), and keeps its best k of them.

The batch search by text runs it in every partition of the image vectors: the images' band keys are computed there
from the vectors it reads anyway (the same keys ``jobs.index`` stores in ``lsh_buckets``, from the same
hyperplanes), so no bucket row and no (query, image) pair is shuffled.

Example:
    >>> table = ProbeTable(simhash_probe_codes(queries, planes, bands, rows, probes))
    >>> image_rows, query_rows = table.pairs(simhash_codes(images, planes, bands, rows))
    >>> best = probed_best_k(table, queries, ids, images, simhash_codes(images, planes, bands, rows), k=10)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ProbeTable:
    """Per band, the probed keys (sorted) and the query each probe belongs to."""

    codes: tuple[np.ndarray, ...]  # per band: uint64 [Q * probes], sorted
    queries: tuple[np.ndarray, ...]  # per band: int64 [Q * probes], the query of each code
    n_queries: int

    @classmethod
    def build(cls, probe_codes: np.ndarray) -> ProbeTable:
        """From uint64 [Q, bands, probes] (:func:`lakelens.lsh.simhash_probe_codes`)."""
        n, bands, probes = probe_codes.shape
        owners = np.repeat(np.arange(n, dtype=np.int64), probes)
        codes, queries = [], []
        for band in range(bands):
            flat = probe_codes[:, band, :].reshape(-1)
            order = np.argsort(flat, kind="stable")
            codes.append(flat[order])
            queries.append(owners[order])
        return cls(tuple(codes), tuple(queries), n)

    def pairs(self, image_codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The distinct (image row, query) pairs that share a probed bucket, as two int64 arrays, for the images'
        codes uint64 [M, bands]."""
        found = []
        for band, (codes, owners) in enumerate(zip(self.codes, self.queries, strict=True)):
            keys = image_codes[:, band]
            lo = np.searchsorted(codes, keys, "left")
            counts = np.searchsorted(codes, keys, "right") - lo
            total = int(counts.sum())
            if not total:
                continue
            rows = np.repeat(np.arange(len(keys), dtype=np.int64), counts)
            starts = np.repeat(lo - np.cumsum(counts) + counts, counts)
            found.append(rows * self.n_queries + owners[np.arange(total) + starts])
        if not found:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        unique = np.unique(np.concatenate(found))
        return unique // self.n_queries, unique % self.n_queries


def probed_best_k(
    table: ProbeTable,
    queries: np.ndarray,
    ids: np.ndarray,
    vectors: np.ndarray,
    codes: np.ndarray,
    k: int,
    block: int = 4096,
) -> list[list[tuple[str, float]]]:
    """Each query's ``k`` best images by cosine among those sharing a bucket it probes, best first, ties by id.

    Args:
        table: the queries' probes; queries: float32 [Q, D]; ids: str [M]; vectors: float32 [M, D], unit length;
        codes: uint64 [M, bands], the images' band keys (:func:`lakelens.lsh.simhash_codes`).
        block: images paired at a time (bounds the pairs held: block x Q at most).

    Returns:
        per query, up to ``k`` (image_id, cosine) pairs (none for a query without candidates).
    """
    # In id order, a stable sort by (query, score down) leaves equal scores in id order: ties go to the smaller id.
    by_id = np.argsort(ids.astype(str), kind="stable")
    ids, vectors, codes = ids[by_id], vectors[by_id], codes[by_id]
    kept = [(np.empty(0, np.int64), np.empty(0, np.float32), np.empty(0, np.int64))]
    for start in range(0, len(ids), block):
        rows, owners = table.pairs(codes[start : start + block])
        rows += start
        kept.append(_top_k(owners, np.einsum("ij,ij->i", vectors[rows], queries[owners]), rows, k))
    merged = [np.concatenate(part) for part in zip(*kept, strict=True)]
    in_rows = np.argsort(merged[2], kind="stable")  # back in id order before the last stable sort
    owners, scores, rows = _top_k(*(part[in_rows] for part in merged), k)
    ends = np.searchsorted(owners, np.arange(len(queries) + 1), "left")
    return [[(str(ids[rows[i]]), float(scores[i])) for i in range(a, b)]
            for a, b in zip(ends[:-1], ends[1:], strict=True)]  # fmt: skip


def _top_k(owners: np.ndarray, scores: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, ...]:
    """The pairs (query, score, image row) of each query's ``k`` best (score down; equal scores keep their order),
    grouped by query in order."""
    # One float64 key, exact: a query's number times 4 plus 1 - the float32 cosine (in [0, 2]).
    order = np.argsort(owners * 4.0 + (1.0 - scores.astype(np.float64)), kind="stable")
    owners, scores, rows = owners[order], scores[order], rows[order]
    first = np.r_[True, owners[1:] != owners[:-1]]
    starts = np.maximum.accumulate(np.where(first, np.arange(len(owners)), 0))
    keep = np.arange(len(owners)) - starts < k
    return owners[keep], scores[keep], rows[keep]
