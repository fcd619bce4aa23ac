"""The segmenter: output shapes, mask scores on hand-made masks, a loss that goes down, a petastorm round trip on
a tiny lake table, and identical outputs after a registry round trip."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from images import encode
from PIL import Image

from lakelens.lake import table_location
from models.data import Preprocessing, petastorm_url, table_loader
from models.masks import confusion_matrix, decode_mask, iou_per_class, mask_boundaries, mean_iou, pixel_accuracy
from models.registry import Manifest, load_model, save_model
from models.segmenter import Segmenter, segmentation_loss
from models.segmenter_training import MaskTargets, evaluate_segmenter, train_segmenter
from models.train_loop import TrainSettings

COLOURS = {1: (220, 30, 30), 2: (30, 30, 220)}  # mask class -> colour of its rectangle


def rectangles_scene(seed: int, side: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """A noisy gray RGB image uint8 [side, side, 3] with a red and a blue rectangle, and its class mask uint8
    [side, side] (0 background, 1 red, 2 blue; the blue one is drawn last, over the red)."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(rng.normal(128, 20, (side, side, 3)), 0, 255)
    mask = np.zeros((side, side), np.uint8)
    for k, colour in COLOURS.items():
        y, x = rng.integers(0, side // 2, 2)
        h, w = rng.integers(side // 4, side // 2, 2)
        pixels[y : y + h, x : x + w] = colour
        mask[y : y + h, x : x + w] = k
    return pixels.astype(np.uint8), mask


def normalised(pixels: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> float32 [N, 3, H, W] as Preprocessing's defaults make it."""
    return (torch.from_numpy(pixels).float().permute(0, 3, 1, 2) / 255 - 0.5) / 0.25


@pytest.fixture
def tiny_table(spark, cfg) -> str:
    scenes = [rectangles_scene(i, side=48) for i in range(24)]
    rows = pd.DataFrame(
        {
            "image_id": [f"id{i}" for i in range(24)],
            "bytes": [encode(Image.fromarray(pixels), "PNG") for pixels, _ in scenes],
            "mask": [encode(Image.fromarray(mask), "PNG") for _, mask in scenes],
        }
    )
    name = f"{cfg.lake.database}.masks_tiny"
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {cfg.lake.database}")
    spark.createDataFrame(rows).repartition(3).write.saveAsTable(name)
    return petastorm_url(table_location(spark, name))


@pytest.mark.parametrize(("channels", "size"), [(3, 32), (3, 64), (1, 48)])
def test_outputs_are_at_input_resolution(channels: int, size: int) -> None:
    model = Segmenter(num_classes=5, in_channels=channels).eval()
    images = torch.randn(2, channels, size, size)
    out = model(images)
    assert out["logits"].shape == (2, 5, size, size) and out["logits"].dtype == torch.float32
    assert out["edges"].shape == (2, size, size) and out["edges"].dtype == torch.float32
    masks = model.predict_masks(images)
    assert masks.shape == (2, size, size) and masks.dtype == torch.int64
    assert torch.equal(masks, out["logits"].argmax(dim=1))


def test_sides_that_do_not_halve_evenly_are_refused() -> None:
    with pytest.raises(ValueError, match="multiples of 8"):
        Segmenter(num_classes=3)(torch.randn(1, 3, 36, 36))
    with pytest.raises(ValueError, match="num_classes must be >= 2"):
        Segmenter(num_classes=1)


def test_scores_on_hand_made_masks() -> None:
    truth = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 2, 2]])
    predicted = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 1], [2, 2, 0, 0]])
    confusion = confusion_matrix(predicted, truth, num_classes=4)
    assert confusion.tolist() == [[3, 1, 0, 0], [0, 4, 0, 0], [2, 0, 2, 0], [0, 0, 0, 0]]
    # background: 3 / (4 + 5 - 3); class 1: 4 / (4 + 5 - 4); class 2: 2 / 4; class 3 is nowhere, so skipped.
    assert iou_per_class(confusion) == pytest.approx({0: 0.5, 1: 0.8, 2: 0.5})
    assert mean_iou(confusion) == pytest.approx(0.6)
    assert pixel_accuracy(confusion) == pytest.approx(9 / 12)
    assert mean_iou(confusion_matrix(truth, truth, num_classes=4)) == 1.0


def test_iou_is_summed_over_the_whole_set_before_dividing() -> None:
    truth = torch.tensor([[[1, 1, 1, 1]], [[1, 0, 0, 0]]])
    predicted = torch.tensor([[[1, 1, 1, 1]], [[0, 0, 0, 0]]])
    scores = iou_per_class(confusion_matrix(predicted, truth, num_classes=2))
    assert scores[1] == pytest.approx(4 / 5)  # not the mean of the per-image scores 1 and 0
    assert scores[0] == pytest.approx(3 / 4)


def test_mask_borders_mark_both_sides() -> None:
    mask = torch.tensor([[[0, 0, 0, 0], [0, 3, 3, 0], [0, 0, 0, 0], [0, 0, 0, 0]]])
    expected = torch.tensor([[[0, 1, 1, 0], [1, 1, 1, 1], [0, 1, 1, 0], [0, 0, 0, 0]]], dtype=torch.bool)
    assert torch.equal(mask_boundaries(mask), expected)


def test_png_masks_decode_to_class_ids_resized_nearest() -> None:
    _, mask = rectangles_scene(3, side=48)
    decoded = decode_mask(encode(Image.fromarray(mask), "PNG"), 24)
    assert decoded.shape == (24, 24) and decoded.dtype == np.int64
    assert np.array_equal(decoded, mask[1::2, 1::2])  # NEAREST picks the pixel at each cell's centre
    with pytest.raises(ValueError, match="single-channel PNG"):
        decode_mask(encode(Image.new("RGB", (8, 8)), "PNG"), 8)


def test_loss_goes_down_on_a_tiny_batch() -> None:
    torch.manual_seed(0)
    scenes = [rectangles_scene(i, side=16) for i in range(4)]
    images = normalised(np.stack([pixels for pixels, _ in scenes]))
    masks = torch.from_numpy(np.stack([mask for _, mask in scenes])).long()
    model = Segmenter(num_classes=3, widths=(8, 16))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(25):
        loss = segmentation_loss(model(images), masks)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_training_round_trip_through_petastorm(tiny_table: str) -> None:
    prep = Preprocessing(size=32)
    with table_loader(tiny_table, prep, batch_size=24, targets=MaskTargets(32), shuffle=False) as loader:
        batch = next(iter(loader))
    assert batch["pixels"].shape == (24, 3, 32, 32) and batch["mask"].shape == (24, 32, 32)
    assert batch["mask"].dtype == torch.int64 and set(batch["mask"].unique().tolist()) == {0, 1, 2}

    torch.manual_seed(0)
    model = Segmenter(num_classes=3, widths=(8, 16, 32))
    history = train_segmenter(
        model, tiny_table, prep, TrainSettings(epochs=8, batch_size=8, lr=1e-2), torch.device("cpu")
    )
    assert [h["rows"] for h in history] == [24.0] * 8
    assert history[-1]["loss"] < 0.75 * history[0]["loss"]
    assert history[-1]["miou"] > history[0]["miou"] + 0.4
    scores = evaluate_segmenter(model, tiny_table, prep, torch.device("cpu"))
    assert scores["rows"] == 24.0
    assert scores["miou"] > 0.7 and scores["pixel_accuracy"] > 0.85
    assert {"iou_0", "iou_1", "iou_2"} <= scores.keys()


def test_registry_round_trip_gives_identical_outputs(tmp_path) -> None:
    torch.manual_seed(0)
    model = Segmenter(num_classes=8, in_channels=3).eval()
    with torch.no_grad():  # non-trivial batch-norm statistics, which must travel too
        for norm in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            norm.running_mean.uniform_(-0.5, 0.5)
            norm.running_var.uniform_(0.5, 2.0)
    entry = save_model(model, Manifest.new("seg", "segmenter", {"num_classes": 8, "in_channels": 3}), tmp_path)
    loaded, manifest = load_model(tmp_path, "seg")
    assert manifest.version == entry.version == "v1" and isinstance(loaded, Segmenter)
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected, got = model(images), loaded(images)
    assert torch.equal(expected["logits"], got["logits"]) and torch.equal(expected["edges"], got["edges"])
