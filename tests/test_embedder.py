"""The embedder: unit-norm vectors, and metric-learning losses that separate classes on a tiny batch."""

from __future__ import annotations

import pytest
import torch

from models.embedder import Embedder, contrastive_loss, triplet_loss_hard


def test_vectors_have_unit_norm_and_shape() -> None:
    vectors = Embedder(dim=16, in_channels=1, widths=(8, 16)).eval()(torch.randn(6, 1, 28, 28))["vectors"]
    assert vectors.shape == (6, 16) and vectors.dtype == torch.float32
    assert torch.allclose(vectors.norm(dim=1), torch.ones(6), atol=1e-5)


def test_triplet_loss_uses_the_hardest_pairs() -> None:
    v = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.8, 0.6], [0.0, 1.0]]), dim=1)
    labels = torch.tensor([0, 0, 1, 1])
    # Query 0: its only positive has cosine 0.6, its hardest negative 0.8: loss 0.2 - 0.6 + 0.8 = 0.4.
    per_query = []
    for q in range(4):
        good = min(float(v[q] @ v[p]) for p in range(4) if p != q and labels[p] == labels[q])
        bad = max(float(v[q] @ v[n]) for n in range(4) if labels[n] != labels[q])
        per_query.append(max(0.0, 0.2 - good + bad))
    assert triplet_loss_hard(v, labels, margin=0.2).item() == pytest.approx(sum(per_query) / 4)
    assert per_query[0] == pytest.approx(0.4)


def test_a_batch_without_triplets_contributes_nothing() -> None:
    v = torch.nn.functional.normalize(torch.randn(3, 4, requires_grad=True), dim=1)
    loss = triplet_loss_hard(v, torch.tensor([0, 1, 2]))
    assert loss.item() == 0.0
    loss.backward()  # still differentiable


@pytest.mark.parametrize("loss_fn", [triplet_loss_hard, contrastive_loss])
def test_training_separates_classes_on_a_tiny_batch(loss_fn) -> None:
    torch.manual_seed(0)
    labels = torch.arange(4).repeat_interleave(6)
    # Each class is a different bright quadrant, with noise: learnable, but not at initialisation.
    images = torch.randn(24, 1, 16, 16) * 0.5
    for i, label in enumerate(labels.tolist()):
        r, c = divmod(label, 2)
        images[i, 0, r * 8 : r * 8 + 8, c * 8 : c * 8 + 8] += 2.0
    model = Embedder(dim=8, in_channels=1, widths=(8, 16))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        loss = loss_fn(model(images)["vectors"], labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    model.eval()
    with torch.no_grad():
        vectors = model(images)["vectors"]
    similarity = (vectors @ vectors.T).fill_diagonal_(-2)
    recall_at_1 = (labels[similarity.argmax(1)] == labels).float().mean().item()
    assert recall_at_1 == 1.0
