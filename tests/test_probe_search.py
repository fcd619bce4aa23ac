"""Search through SimHash buckets without Spark: the band keys as integers, the probes, the (image, query) pairs that
share a probed bucket, and each query's best k among them."""

from __future__ import annotations

import numpy as np
import pytest

from lakelens.lsh import (
    SimHashParams,
    code_key,
    hyperplanes,
    simhash_band_keys,
    simhash_codes,
    simhash_probe_codes,
)
from lakelens.probe_search import ProbeTable, probed_best_k
from stages.search import best_k


def unit_rows(n: int, dim: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.mark.parametrize("rows", [1, 7, 8, 12, 20])
def test_codes_are_the_stored_band_keys_read_as_integers(rows: int) -> None:
    planes = hyperplanes(SimHashParams("m:v1", dim=16, bands=4, rows=rows, seed=2))
    vectors = unit_rows(30, 16, 1)
    keys = simhash_band_keys(vectors, planes, 4, rows)
    codes = simhash_codes(vectors, planes, 4, rows)
    assert codes.shape == (30, 4) and codes.dtype == np.uint64
    assert [[code_key(c, rows) for c in row] for row in codes] == keys


def test_probes_are_the_own_key_then_the_least_certain_bits_flipped() -> None:
    planes = np.eye(4, dtype=np.float32)  # one band of 4 bits: the projections are the vector itself
    query = np.array([[0.9, -0.05, 0.3, -0.6]], np.float32)
    probes = simhash_probe_codes(query, planes, bands=1, rows=4, probes=2)
    own = 0b1010 << 4  # bits 1, 0, 1, 0, the first highest in a byte padded with zeros
    # least certain first: bit 1 (|-0.05|), then bit 2 (|0.3|)
    assert probes[0, 0].tolist() == [own, own ^ (0b0100 << 4), own ^ (0b0010 << 4)]
    assert simhash_probe_codes(query, planes, 1, 4, probes=9).shape == (1, 1, 5)  # at most every bit once


def test_pairs_are_those_sharing_a_probed_bucket_once_each() -> None:
    rng = np.random.default_rng(0)
    probe_codes = rng.integers(0, 6, size=(5, 3, 2)).astype(np.uint64)  # 5 queries, 3 bands, 2 probes each
    image_codes = rng.integers(0, 6, size=(40, 3)).astype(np.uint64)
    rows, owners = ProbeTable.build(probe_codes).pairs(image_codes)
    expected = sorted(
        (i, q) for i in range(40) for q in range(5) if any(image_codes[i, b] in probe_codes[q, b] for b in range(3))
    )
    assert list(zip(rows.tolist(), owners.tolist(), strict=True)) == expected
    none = ProbeTable.build(probe_codes).pairs(np.full((4, 3), 99, np.uint64))
    assert none[0].size == 0 and none[1].size == 0


def test_probed_best_k_is_the_exact_ranking_where_every_image_is_probed() -> None:
    """One bit per band and one probe: both keys of each band are probed, every image is a candidate."""
    queries, vectors = unit_rows(7, 16, 3), unit_rows(300, 16, 4)
    vectors[5] = vectors[9]  # equal scores rank by image id
    ids = np.asarray([f"img{(i * 37) % 300:03d}" for i in range(300)], dtype=object)
    planes = hyperplanes(SimHashParams("m:v1", dim=16, bands=3, rows=1, seed=1))
    table = ProbeTable.build(simhash_probe_codes(queries, planes, 3, 1, probes=1))
    found = probed_best_k(table, queries, ids, vectors, simhash_codes(vectors, planes, 3, 1), k=20, block=64)
    exact = best_k(queries, ids, vectors, 20)
    assert [[i for i, _ in hits] for hits in found] == [[i for i, _ in hits] for hits in exact]
    np.testing.assert_allclose([[s for _, s in h] for h in found], [[s for _, s in h] for h in exact], atol=1e-6)


def test_probed_best_k_scores_only_the_probed_buckets() -> None:
    """Sixteen bits in one band, no probes: a query meets only the images whose every bit agrees with its own."""
    queries, vectors = unit_rows(4, 16, 5), unit_rows(500, 16, 6)
    vectors[:3] = queries[0]  # three copies of the first query share its bucket
    ids = np.asarray([f"img{i:03d}" for i in range(500)], dtype=object)
    planes = hyperplanes(SimHashParams("m:v1", dim=16, bands=1, rows=16, seed=1))
    codes = simhash_codes(vectors, planes, 1, 16)
    table = ProbeTable.build(simhash_probe_codes(queries, planes, 1, 16, probes=0))
    found = probed_best_k(table, queries, ids, vectors, codes, k=10)
    own = simhash_codes(queries, planes, 1, 16)[:, 0]
    for q, hits in enumerate(found):
        members = {ids[i] for i in np.flatnonzero(codes[:, 0] == own[q])}
        assert {i for i, _ in hits} <= members and len(hits) == min(10, len(members))
    assert [i for i, _ in found[0][:3]] == ["img000", "img001", "img002"]
    assert found[0][0][1] == pytest.approx(1.0, abs=1e-6)
