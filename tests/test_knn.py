"""Exact top-k without Spark: one block pair's candidates (each left image's k best, the floors of right images), and
a whole lake's lists updated in one process."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lakelens import knn
from lakelens.knn import LIST_COLUMNS, ExactParams, block_candidates, floors_of, ranked, update_lists


def unit(*angles: float) -> np.ndarray:
    return np.array([[np.cos(a), np.sin(a)] for a in angles], np.float32)


def candidates(*args, **kwargs) -> list[tuple[str, str, float]]:
    image, neighbor, cosine = block_candidates(*args, **kwargs)
    return sorted((i, n, round(float(c), 4)) for i, n, c in zip(image, neighbor, cosine, strict=True))


def test_each_left_image_keeps_its_k_best_and_never_itself() -> None:
    ids = np.array(["a", "b", "c", "d"], dtype=object)
    vectors = unit(0.0, 0.1, 0.5, 3.0)
    found = candidates(ids[:2], vectors[:2], ids, vectors, np.full(4, np.inf), k=2)
    assert found == [("a", "b", 0.995), ("a", "c", 0.8776), ("b", "a", 0.995), ("b", "c", 0.9211)]


def test_right_images_take_left_ones_at_or_above_their_floor() -> None:
    left_ids, right_ids = np.array(["n"], dtype=object), np.array(["x", "y", "z"], dtype=object)
    floors = np.array([0.9, -np.inf, np.inf])  # x: a full list whose worst is 0.9; y: a short list; z: a query
    found = candidates(left_ids, unit(0.0), right_ids, unit(0.3, 2.0, 0.1), floors, k=1)
    assert found == [("n", "z", 0.995), ("x", "n", 0.9553), ("y", "n", -0.4161)]


def test_ties_within_the_margin_are_all_kept_for_the_ranking_to_decide() -> None:
    ids = np.array(["q", "b", "a"], dtype=object)
    vectors = unit(0.0, 0.2, -0.2)
    found = candidates(ids[:1], vectors[:1], ids, vectors, np.full(3, np.inf), k=1)
    assert [n for _, n, _ in found] == ["a", "b"]


def test_an_empty_block_and_the_params_id_of_a_model() -> None:
    ids = np.array(["a"], dtype=object)
    image, neighbor, cosine = block_candidates(ids, unit(0.0), ids, unit(0.0), np.full(1, np.inf), k=3)
    assert (len(image), len(neighbor), len(cosine)) == (0, 0, 0)
    params = ExactParams(model="embedder:v2", dim=64)
    assert params.params_id.startswith("exact-") and params.params_id != ExactParams("embedder:v3", 64).params_id


def brute_force_lists(ids: list[str], vectors: np.ndarray, k: int) -> pd.DataFrame:
    """Every image's k best by cosine (float64, then float32, as the index stores it), ties by neighbour id."""
    cos = (vectors.astype(np.float64) @ vectors.astype(np.float64).T).astype(np.float32)
    rows = []
    for i, image_id in enumerate(ids):
        best = sorted((-cos[i, j], n) for j, n in enumerate(ids) if j != i)[:k]
        rows += [(image_id, n, rank, -c) for rank, (c, n) in enumerate(best, 1)]
    return pd.DataFrame(rows, columns=LIST_COLUMNS).astype({"rank": np.int32, "cosine": np.float32})


def sorted_lists(lists: pd.DataFrame) -> list[tuple]:
    return sorted(map(tuple, lists[LIST_COLUMNS].itertuples(index=False)))


def test_floors_are_the_rank_k_cosine_minus_inf_for_short_lists_and_plus_inf_without_one() -> None:
    lists = pd.DataFrame([("a", "b", 1, 0.9), ("a", "c", 2, 0.7), ("b", "a", 1, 0.9)], columns=LIST_COLUMNS).astype(
        {"rank": np.int32, "cosine": np.float32}
    )
    assert floors_of(np.array(["a", "b", "n"], dtype=object), lists, k=2).tolist() == [np.float32(0.7), -np.inf, np.inf]


def test_ranked_orders_by_cosine_then_neighbour_id() -> None:
    scored = pd.DataFrame(
        [("a", "b", 0.5), ("a", "c", 0.9), ("a", "d", 0.5), ("a", "e", 0.1), ("b", "a", 0.5)],
        columns=["image_id", "neighbor_id", "cosine"],
    ).astype({"cosine": np.float32})
    assert sorted_lists(ranked(scored, 3)) == [
        ("a", "b", 2, np.float32(0.5)), ("a", "c", 1, np.float32(0.9)), ("a", "d", 3, np.float32(0.5)),
        ("b", "a", 1, np.float32(0.5)),
    ]  # fmt: skip


def test_lists_updated_night_by_night_equal_a_full_build_and_brute_force(monkeypatch) -> None:
    monkeypatch.setattr(knn, "BLOCK_SCORES", 700)  # queries in blocks of 10 against all 70 vectors
    rng = np.random.default_rng(7)
    centres = rng.standard_normal((5, 16))
    vectors = centres[rng.integers(0, 5, 70)] + 0.5 * rng.standard_normal((70, 16))
    vectors[41] = vectors[40] = vectors[3]  # equal cosines: ranked by neighbour id
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    ids = np.array([f"img{i:03d}" for i in range(70)], dtype=object)
    lists = pd.DataFrame(columns=LIST_COLUMNS).astype({"rank": np.int32, "cosine": np.float32})
    for night in (4, 30, 70):  # the first night's lists are shorter than k
        lists, candidates, updated = update_lists(ids[:night], vectors[:night], lists, k=5)
        assert candidates >= updated > 0
    again = update_lists(ids, vectors, lists, k=5)
    assert sorted_lists(again[0]) == sorted_lists(lists) and again[1:] == (0, 0)
    full, _, updated = update_lists(ids, vectors, lists.iloc[:0], k=5)
    assert updated == 70
    assert sorted_lists(full) == sorted_lists(lists) == sorted_lists(brute_force_lists(list(ids), vectors, 5))
