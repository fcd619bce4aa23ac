"""The classifier model: output shapes, both heads, and a loss that goes down on a tiny batch."""

from __future__ import annotations

import pytest
import torch

from models.classifier import Classifier


@pytest.mark.parametrize(("channels", "size"), [(1, 28), (3, 64)])
def test_outputs_are_named_with_shapes(channels: int, size: int) -> None:
    model = Classifier(num_classes=7, in_channels=channels).eval()
    out = model(torch.randn(5, channels, size, size))
    assert set(out) == {"logits", "scores"}
    assert out["logits"].shape == (5, 7) and out["logits"].dtype == torch.float32
    assert torch.allclose(out["scores"].sum(dim=1), torch.ones(5))  # softmax


def test_multi_label_scores_are_independent() -> None:
    model = Classifier(num_classes=6, multi_label=True).eval()
    scores = model(torch.randn(4, 3, 32, 32))["scores"]
    assert ((scores > 0) & (scores < 1)).all() and not torch.allclose(scores.sum(dim=1), torch.ones(4))


@pytest.mark.parametrize("multi_label", [False, True])
def test_loss_goes_down_on_a_tiny_batch(multi_label: bool) -> None:
    torch.manual_seed(0)
    model = Classifier(num_classes=4, in_channels=1, widths=(8, 16), multi_label=multi_label)
    images = torch.randn(16, 1, 16, 16)
    targets = (torch.rand(16, 4) > 0.5).float() if multi_label else torch.randint(0, 4, (16,))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = model.loss(model(images)["logits"], targets)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        Classifier(num_classes=0)
