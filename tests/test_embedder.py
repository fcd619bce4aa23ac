"""The embedder: unit-norm vectors, metric-learning losses (batch and memory mining), augmented views, recall@1
with distractors, and a train/evaluate round trip through petastorm on a tiny Parquet table."""

from __future__ import annotations

import io
import logging

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from models.augment import Augment, AugmentedViews
from models.data import Preprocessing
from models.embedder import (
    Embedder,
    GeneralisedMeanPool,
    contrastive_loss,
    multi_similarity_loss,
    pair_loss,
    triplet_loss_hard,
)
from models.embedder_training import evaluate_embedder, recall_at_1, roc_auc, train_embedder, verification_scores
from models.train_loop import TrainSettings

LOSSES = [triplet_loss_hard, multi_similarity_loss, contrastive_loss, pair_loss]


def unit(rows: list[list[float]]) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.tensor(rows), dim=1)


def quadrant_image(label: int, seed: int, size: int = 16) -> np.ndarray:
    """uint8 [size, size, 3]: noise with one bright quadrant per class (0..3): learnable, not given at init."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 90, (size, size, 3), dtype=np.uint8)
    r, c, half = *divmod(label, 2), size // 2
    pixels[r * half : (r + 1) * half, c * half : (c + 1) * half] += 160
    return pixels


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_vectors_have_unit_norm_and_shape() -> None:
    vectors = Embedder(dim=16, in_channels=1, widths=(8, 16)).eval()(torch.randn(6, 1, 28, 28))["vectors"]
    assert vectors.shape == (6, 16) and vectors.dtype == torch.float32
    assert torch.allclose(vectors.norm(dim=1), torch.ones(6), atol=1e-5)


def test_generalised_mean_pool_spans_average_to_maximum() -> None:
    features = torch.zeros(1, 2, 4, 4)
    features[0, 0, 0, 0] = 8.0  # one small bright spot in channel 0
    features[0, 1] = 0.5  # a flat background in channel 1
    with torch.no_grad():
        average, sharp = GeneralisedMeanPool(p=1.0)(features), GeneralisedMeanPool(p=30.0)(features)
    assert torch.allclose(average, torch.tensor([[0.5, 0.5]]), atol=1e-4)
    assert sharp[0, 0] > 7.0 and float(sharp[0, 1]) == pytest.approx(0.5, abs=1e-4)


def test_untrained_vectors_are_spread_not_collapsed() -> None:
    # Without centring, pooled ReLU features make every pair of vectors nearly parallel at initialisation.
    torch.manual_seed(0)
    vectors = Embedder(dim=16, in_channels=1, widths=(8, 16)).train()(torch.randn(32, 1, 16, 16))["vectors"]
    off_diagonal = (vectors @ vectors.T)[~torch.eye(32, dtype=torch.bool)]
    assert off_diagonal.mean().abs() < 0.2


def test_triplet_loss_uses_the_hardest_pairs() -> None:
    v = unit([[1.0, 0.0], [0.6, 0.8], [0.8, 0.6], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1, 1])
    # Query 0: its only positive has cosine 0.6, its hardest negative 0.8: loss 0.2 - 0.6 + 0.8 = 0.4.
    per_query = []
    for q in range(4):
        good = min(float(v[q] @ v[p]) for p in range(4) if p != q and labels[p] == labels[q])
        bad = max(float(v[q] @ v[n]) for n in range(4) if labels[n] != labels[q])
        per_query.append(max(0.0, 0.2 - good + bad))
    assert triplet_loss_hard(v, labels, margin=0.2).item() == pytest.approx(sum(per_query) / 4)
    assert per_query[0] == pytest.approx(0.4)


def test_the_memory_supplies_positives_and_hard_negatives() -> None:
    queries, labels = unit([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1])
    assert triplet_loss_hard(queries, labels).item() == 0.0  # no query has a positive in the batch
    memory = (unit([[0.6, 0.8], [0.9, 0.1], [0.0, 1.0]]), torch.tensor([0, 5, 1]))
    # Query 0: positive 0.6 (memory), hardest negative 0.994 (memory label 5); query 1: positive 1.0, negative
    # 0.8 (memory label 0) -> hinge 0.
    hardest_bad = float(unit([[0.9, 0.1]])[0, 0])
    expected = (0.2 - 0.6 + hardest_bad + 0.0) / 2
    assert triplet_loss_hard(queries, labels, memory=memory).item() == pytest.approx(expected, abs=1e-6)


def test_multi_similarity_weighs_only_violating_pairs() -> None:
    labels = torch.tensor([0, 0, 1, 1])
    separated = unit([[1.0, 0.0], [0.99, 0.14], [0.0, 1.0], [0.14, 0.99]])
    mixed = unit([[1.0, 0.0], [0.0, 1.0], [0.99, 0.14], [0.14, 0.99]])
    # Well separated classes: no negative comes within the margin of a positive, so no pair is kept.
    assert multi_similarity_loss(separated, labels).item() == 0.0
    # Each query's positive is less similar than a negative: pairs are kept and weighed.
    assert multi_similarity_loss(mixed, labels).item() > 0.5


@pytest.mark.parametrize("loss_fn", LOSSES)
def test_a_batch_without_pairs_contributes_nothing(loss_fn) -> None:
    v = torch.nn.functional.normalize(torch.randn(3, 4, requires_grad=True), dim=1)
    pairs_of_any_kind = loss_fn in (contrastive_loss, pair_loss)
    loss = loss_fn(v[:1], torch.tensor([0])) if pairs_of_any_kind else loss_fn(v, torch.tensor([0, 1, 2]))
    assert loss.item() == 0.0
    loss.backward()  # still differentiable


@pytest.mark.parametrize("loss_fn", LOSSES)
def test_training_separates_classes_on_a_tiny_batch(loss_fn) -> None:
    torch.manual_seed(0)
    labels = torch.arange(4).repeat_interleave(6)
    images = torch.stack([torch.from_numpy(quadrant_image(int(y), i)).permute(2, 0, 1) for i, y in enumerate(labels)])
    images = (images.float() / 255 - 0.5) / 0.25
    model = Embedder(dim=8, in_channels=3, widths=(8, 16))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        loss = loss_fn(model(images)["vectors"], labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    with torch.no_grad():
        vectors = model.eval()(images)["vectors"]
    assert recall_at_1(vectors, labels) == 1.0


def test_recall_at_1_counts_queries_only_and_distractors_never_match() -> None:
    vectors = unit([[1.0, 0.0], [0.95, 0.3], [0.0, 1.0], [0.3, 0.95], [0.99, 0.05]])
    # Row 0's nearest is the distractor row 4 (a miss); rows 2, 3 find each other; row 1's nearest is row 4 too.
    labels = torch.tensor([0, 0, 1, 1, -7])
    assert recall_at_1(vectors, labels) == pytest.approx(2 / 4)
    # Two distractors with the same negative label are still no match for each other, and no queries.
    assert recall_at_1(vectors, torch.tensor([0, 0, -1, -1, -2])) == pytest.approx(0 / 2)
    with pytest.raises(ValueError, match="distractors"):
        recall_at_1(vectors, torch.full((5,), -1))


def test_a_row_whose_label_no_other_row_has_is_searched_but_no_query() -> None:
    vectors = unit([[1.0, 0.0], [0.95, 0.3], [0.0, 1.0], [0.3, 0.95], [0.99, 0.05]])
    # Row 4 (label 9, alone) cannot be found correctly by anyone, and is what rows 0 and 1 find first.
    assert recall_at_1(vectors, torch.tensor([0, 0, 1, 1, 9])) == pytest.approx(2 / 4)
    assert recall_at_1(vectors, torch.tensor([0, 5, 1, 1, 0])) == pytest.approx(4 / 4)


def test_augment_is_seeded_and_keeps_size_and_mode() -> None:
    img = Image.fromarray(quadrant_image(1, 0, size=32))
    first, again = (Augment()(img, np.random.default_rng(3)) for _ in range(2))
    other = Augment()(img, np.random.default_rng(4))
    assert first.size == img.size and first.mode == "RGB"
    assert np.array_equal(np.asarray(first), np.asarray(again))
    assert not np.array_equal(np.asarray(first), np.asarray(other))
    gray = Augment()(img.convert("L"), np.random.default_rng(3))
    assert gray.mode == "L" and gray.size == img.size


def test_augmented_views_decode_one_view_per_row() -> None:
    prep = Preprocessing(size=16, channels=1, mean=(0.5,), std=(0.25,))
    rows = pd.DataFrame({"bytes": [png(quadrant_image(i, i, size=24)) for i in range(3)], "label": [4, 5, 6]})
    views = AugmentedViews(prep, seed=1)
    decoded = views.decode(rows)
    assert decoded["label"] == [4, 5, 6]
    assert [v.shape for v in decoded["view"]] == [(1, 16, 16)] * 3 and decoded["view"][0].dtype == np.float32
    assert np.array_equal(views.decode(rows)["view"][2], decoded["view"][2])  # depends on seed and bytes only
    assert not np.array_equal(AugmentedViews(prep, seed=2).decode(rows)["view"][2], decoded["view"][2])


@pytest.fixture
def tiny_tables(tmp_path) -> tuple[str, str]:
    """file:// URLs of a training table (4 classes x 8 rows) and an evaluation table (4 x 3 rows + 4 distractors
    of a class never trained on, label < 0)."""
    train_rows = [(png(quadrant_image(i % 4, i)), i % 4) for i in range(32)]
    eval_rows = [(png(quadrant_image(i % 4, 100 + i)), i % 4) for i in range(12)]
    eval_rows += [
        (png(np.random.default_rng(200 + i).integers(0, 90, (16, 16, 3), dtype=np.uint8)), -1 - i) for i in range(4)
    ]
    urls = []
    for name, rows in (("train", train_rows), ("eval", eval_rows)):
        table = pa.table({"bytes": [b for b, _ in rows], "label": pa.array([y for _, y in rows], pa.int64())})
        (tmp_path / name).mkdir()
        pq.write_table(table, tmp_path / name / "part-0.parquet", row_group_size=8)
        urls.append(f"file://{tmp_path / name}")
    return urls[0], urls[1]


def test_train_and_evaluate_round_trip(tiny_tables: tuple[str, str], caplog) -> None:
    train_url, eval_url = tiny_tables
    prep = Preprocessing(size=16)
    model = Embedder(dim=8, in_channels=3, widths=(8, 16))
    settings = TrainSettings(epochs=3, batch_size=16, lr=1e-2, workers=1)
    with caplog.at_level(logging.INFO, logger="lakelens.train"):
        history = train_embedder(model, train_url, prep, settings, torch.device("cpu"), memory_after=2)
    assert len(history) == 3 and sum("multi_similarity loss" in r.message for r in caplog.records) == 3
    assert history[0]["rows"] == 64.0  # 32 clean images and their 32 views
    metrics = evaluate_embedder(model, eval_url, prep, torch.device("cpu"))
    assert metrics["rows"] == 16.0
    assert metrics["recall_at_1"] >= 0.75


def test_unknown_loss_is_refused() -> None:
    with pytest.raises(ValueError, match="loss must be one of"):
        train_embedder(Embedder(dim=4), "file:///nowhere", Preprocessing(size=8), TrainSettings(epochs=1),
                       torch.device("cpu"), loss="arcface")  # fmt: skip


def test_pair_loss_by_hand() -> None:
    u, w = [1.0, 0.0], [0.8, 0.6]  # cosine 0.8
    vectors = unit([u, u, w, w])
    labels = torch.tensor([0, 0, 1, 1])
    # Same pairs at cosine 1 cost nothing; each query's different pair costs (0.8 - 0.3)^2: the mean of 4 x 0
    # and 4 x 0.25.
    assert pair_loss(vectors, labels, margin=0.3).item() == pytest.approx(0.125)
    assert pair_loss(vectors, labels, margin=0.9).item() == pytest.approx(0.0, abs=1e-9)
    apart = unit([[1.0, 0.0], [0.6, 0.8], [0.0, -1.0], [0.0, -1.0]])
    # Query 0 and 1: same pair at cosine 0.6 -> 0.16 each; queries 2, 3: same pair at 1 -> 0; different pairs are
    # below the margin (cosines -0.8 and 0): 0.
    assert pair_loss(apart, labels, margin=0.3).item() == pytest.approx(0.32 / 8)


def test_roc_auc_and_the_threshold_for_one_percent_false_accepts() -> None:
    scores = torch.tensor([0.1, 0.4, 0.35, 0.8], dtype=torch.float64)
    assert roc_auc(scores, torch.tensor([False, False, True, True])) == 0.75
    assert roc_auc(torch.tensor([0.5, 0.5], dtype=torch.float64), torch.tensor([True, False])) == 0.5  # a tie: half
    # Two classes of 30 near-identical vectors each, far apart: every same pair is accepted, no different one.
    torch.manual_seed(0)
    centres = unit([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    vectors = torch.nn.functional.normalize(centres.repeat_interleave(30, 0) + 0.01 * torch.randn(60, 3), dim=1)
    labels = torch.arange(2).repeat_interleave(30)
    scores = verification_scores(vectors, labels)
    assert scores["verify_auc"] == 1.0 and scores["verify_tar"] == 1.0 and scores["verify_pairs"] == 60 * 59 / 2
    different = (vectors[:30] @ vectors[30:].T).double().flatten().sort().values
    assert scores["verify_threshold"] == pytest.approx(different[-10].item() + 1e-6)  # 9 of 900 above it: 1 %
    assert (different >= scores["verify_threshold"]).double().mean() <= 0.01
    assert verification_scores(vectors[:30], labels[:30]) == {}  # no different pair: nothing to decide
