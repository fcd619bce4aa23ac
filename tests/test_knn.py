"""Exact top-k candidates of one block pair, without Spark: each left image's k best, the floors of right images."""

from __future__ import annotations

import numpy as np

from lakelens.knn import ExactParams, block_candidates


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
