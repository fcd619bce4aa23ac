"""The detector: box geometry, NMS and mAP on hand-made boxes, output shapes, a loss that goes down, a training
round trip through petastorm on a tiny lake table, and the registry round trip."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from images import encode
from PIL import Image, ImageDraw

from lakelens.lake import table_location
from models.boxes import (
    batched_nms,
    box_iou,
    cxcywh_to_xyxy,
    decode_deltas,
    encode_deltas,
    grid_anchors,
    nms,
    xywh_to_xyxy,
    xyxy_to_cxcywh,
    xyxy_to_xywh,
)
from models.data import Preprocessing, petastorm_url, to_tensor_array
from models.detection_loss import BACKGROUND, detection_loss, match_anchors
from models.detection_metrics import average_precision, mean_average_precision
from models.detector import Detector
from models.detector_training import BoxTargets, evaluate_detector, flip_horizontally, train_detector
from models.registry import Manifest, load_model, save_model
from models.train_loop import TrainSettings


def test_box_formats_and_delta_coding_round_trip() -> None:
    xywh = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 0.05, 0.1]])
    xyxy = xywh_to_xyxy(xywh)
    assert torch.allclose(xyxy, torch.tensor([[0.1, 0.2, 0.4, 0.6], [0.5, 0.5, 0.55, 0.6]]))
    assert torch.allclose(xyxy_to_xywh(cxcywh_to_xyxy(xyxy_to_cxcywh(xyxy))), xywh)
    anchors = torch.tensor([[0.25, 0.4, 0.2, 0.2], [0.5, 0.5, 0.1, 0.1]])
    deltas = encode_deltas(xyxy_to_cxcywh(xyxy), anchors)
    assert torch.allclose(decode_deltas(deltas, anchors), xyxy_to_cxcywh(xyxy), atol=1e-6)
    assert torch.allclose(decode_deltas(torch.zeros(2, 4), anchors), anchors)


def test_iou_of_hand_made_boxes() -> None:
    a = torch.tensor([[0.0, 0.0, 0.5, 0.5]])
    b = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.25, 0.0, 0.75, 0.5], [0.6, 0.6, 1.0, 1.0]])
    assert torch.allclose(box_iou(a, b), torch.tensor([[1.0, 1 / 3, 0.0]]))


def test_grid_anchors_cover_the_image_at_each_size() -> None:
    anchors = grid_anchors(2, 4, (0.1, 0.3))
    assert anchors.shape == (2 * 4 * 2, 4) and anchors.dtype == torch.float32
    assert torch.allclose(anchors[0], torch.tensor([0.125, 0.25, 0.1, 0.1]))
    assert torch.allclose(anchors[1], torch.tensor([0.125, 0.25, 0.3, 0.3]))
    assert torch.allclose(anchors[-1], torch.tensor([0.875, 0.75, 0.3, 0.3]))


def test_nms_keeps_the_best_of_overlapping_boxes() -> None:
    boxes = torch.tensor([[0.0, 0.0, 0.4, 0.4], [0.02, 0.0, 0.42, 0.4], [0.5, 0.5, 0.9, 0.9], [0.0, 0.0, 0.4, 0.3]])
    scores = torch.tensor([0.6, 0.9, 0.8, 0.7])
    assert nms(boxes, scores, iou_threshold=0.5).tolist() == [1, 2]  # 0 and 3 overlap box 1 by > 0.5
    assert nms(boxes, scores, iou_threshold=0.95).tolist() == [1, 2, 3, 0]
    labels = torch.tensor([0, 0, 0, 1])
    assert batched_nms(boxes, scores, labels, iou_threshold=0.5).tolist() == [1, 2, 3]  # other classes stay
    assert batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), 0.5).tolist() == []


def test_average_precision_is_the_area_under_the_monotone_curve() -> None:
    # hits: TP, FP, TP out of 2 objects -> precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1.
    assert average_precision(np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3])) == pytest.approx(
        0.5 * 1.0 + 0.5 * 2 / 3
    )


def _truth(boxes: list[list[float]], labels: list[int]) -> dict[str, torch.Tensor]:
    return {"boxes": torch.tensor(boxes).reshape(-1, 4), "labels": torch.tensor(labels, dtype=torch.int64)}


def _found(boxes: list[list[float]], labels: list[int], scores: list[float]) -> dict[str, torch.Tensor]:
    return {**_truth(boxes, labels), "scores": torch.tensor(scores)}


def test_map_of_hand_made_detections() -> None:
    truths = [_truth([[0.1, 0.1, 0.2, 0.2], [0.6, 0.6, 0.3, 0.3]], [0, 1]), _truth([[0.4, 0.4, 0.2, 0.2]], [0])]
    perfect = [
        _found([[0.1, 0.1, 0.2, 0.2], [0.6, 0.6, 0.3, 0.3]], [0, 1], [0.9, 0.8]),
        _found([[0.4, 0.4, 0.2, 0.2]], [0], [0.7]),
    ]
    assert mean_average_precision(perfect, truths, num_classes=3) == {"map": 1.0, "ap_0": 1.0, "ap_1": 1.0}

    wrong_class = [_found([[0.1, 0.1, 0.2, 0.2], [0.6, 0.6, 0.3, 0.3]], [0, 2], [0.9, 0.8]), perfect[1]]
    assert mean_average_precision(wrong_class, truths, num_classes=3)["map"] == pytest.approx(0.5)

    shifted = [_found([[0.2, 0.2, 0.2, 0.2], [0.6, 0.6, 0.3, 0.3]], [0, 1], [0.9, 0.8]), perfect[1]]  # IoU 1/7
    assert mean_average_precision(shifted, truths, num_classes=3)["ap_0"] == pytest.approx(0.5 * 0.5)

    # A duplicate scored above the second object's box is a false positive: precision 1, 1/2, 2/3.
    duplicate = [_found([[0.1, 0.1, 0.2, 0.2], [0.11, 0.1, 0.2, 0.2], [0.6, 0.6, 0.3, 0.3]], [0, 0, 1],
                        [0.9, 0.85, 0.8]), perfect[1]]  # fmt: skip
    assert mean_average_precision(duplicate, truths, num_classes=3)["ap_0"] == pytest.approx(0.5 + 0.5 * 2 / 3)

    nothing = [_found([], [], []), _found([], [], [])]
    assert mean_average_precision(nothing, truths, num_classes=3)["map"] == 0.0
    with pytest.raises(ValueError, match="no ground-truth boxes"):
        mean_average_precision(nothing, [_truth([], []), _truth([], [])], num_classes=3)


@pytest.mark.parametrize(("channels", "size"), [(1, 32), (3, 64)])
def test_outputs_are_named_with_shapes(channels: int, size: int) -> None:
    model = Detector(num_classes=5, in_channels=channels).eval()
    out = model(torch.randn(2, channels, size, size))
    anchors = (size // 8) ** 2 * 3
    assert set(out) == {"logits", "deltas", "anchors"}
    assert out["logits"].shape == (2, anchors, 6) and out["logits"].dtype == torch.float32
    assert out["deltas"].shape == (2, anchors, 4) and out["anchors"].shape == (2, anchors, 4)
    found = model.detect(torch.randn(2, channels, size, size), score_threshold=0.0, max_detections=7)
    assert len(found) == 2
    for image in found:
        assert image["boxes"].shape == (7, 4) and image["boxes"].dtype == torch.float32
        assert image["labels"].dtype == torch.int64 and image["scores"].dtype == torch.float32
        assert ((image["labels"] >= 0) & (image["labels"] < 5)).all()
        xyxy = xywh_to_xyxy(image["boxes"])
        assert (xyxy >= 0).all() and (xyxy <= 1 + 1e-6).all()
        assert (image["scores"][:-1] >= image["scores"][1:]).all()


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        Detector(num_classes=0)


def test_every_object_gets_an_anchor_and_far_anchors_are_background() -> None:
    anchors = grid_anchors(4, 4, (0.25, 0.5))
    boxes = torch.tensor([[[0.0, 0.0, 0.25, 0.25], [0.6, 0.6, 0.05, 0.05], [0.0, 0.0, 0.0, 0.0]]])
    matched = match_anchors(anchors, boxes, torch.tensor([[3, 1, -1]]))
    assert matched.shape == (1, 32) and matched.dtype == torch.int64
    assert matched[0, 0] == 0  # the top-left cell's small anchor is the first box exactly
    assert (matched == 1).sum() == 1  # a tiny box overlaps no anchor well: only its best one learns it
    assert matched[0, -1] == BACKGROUND and not (matched == 2).any()


def _scene(boxes: list[tuple[int, int, int]], size: int = 32) -> bytes:
    """A gray image with red squares (class 0) and blue discs (class 1): (class, x0, y0), side size / 4."""
    img = Image.new("RGB", (size, size), (128, 128, 128))
    draw = ImageDraw.Draw(img)
    side = size // 4
    for cls, x, y in boxes:
        shape = draw.rectangle if cls == 0 else draw.ellipse
        shape((x, y, x + side - 1, y + side - 1), fill=(220, 30, 30) if cls == 0 else (30, 30, 220))
    return encode(img, "PNG")


def _scenes(count: int, size: int = 32) -> pd.DataFrame:
    """Scenes of two objects of random classes, one in the left and one in the right half."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(count):
        lefts = (int(rng.integers(0, 8)), int(rng.integers(16, 24)))
        objects = [(int(rng.integers(2)), x, int(rng.integers(0, 24))) for x in lefts]
        boxes = [v / size for _, x, y in objects for v in (x, y, size // 4, size // 4)]
        labels = [c for c, _, _ in objects]
        rows.append({"image_id": f"id{i}", "bytes": _scene(objects, size), "boxes": boxes, "box_labels": labels})
    return pd.DataFrame(rows)


def test_box_targets_pad_and_truncate() -> None:
    rows = pd.DataFrame({"boxes": [[0.1, 0.2, 0.3, 0.4] * 3, [], None], "box_labels": [[2, 0, 1], [], None]})
    targets = pickle.loads(pickle.dumps(BoxTargets(max_objects=2)))
    fields = targets.decode(rows)
    assert [f[0] for f in targets.fields()] == ["boxes", "box_labels"]
    assert fields["boxes"][0].shape == (2, 4) and fields["boxes"][0].dtype == np.float32
    assert fields["box_labels"][0].tolist() == [2, 0] and fields["box_labels"][1].tolist() == [-1, -1]
    assert fields["box_labels"][2].dtype == np.int64 and not fields["boxes"][2].any()


def test_flip_mirrors_images_and_boxes() -> None:
    images = torch.arange(8.0).reshape(2, 1, 1, 4)
    boxes = torch.tensor([[[0.1, 0.2, 0.3, 0.4]], [[0.5, 0.5, 0.25, 0.25]]])
    flipped, moved = flip_horizontally(images, boxes, chance=1.0, generator=torch.Generator())
    assert flipped[0, 0, 0].tolist() == [3.0, 2.0, 1.0, 0.0]
    assert torch.allclose(moved, torch.tensor([[[0.6, 0.2, 0.3, 0.4]], [[0.25, 0.5, 0.25, 0.25]]]))


def test_loss_goes_down_on_a_tiny_batch() -> None:
    torch.manual_seed(0)
    rows = _scenes(8)
    prep = Preprocessing(size=32)
    images = torch.from_numpy(np.stack([to_tensor_array(b, prep) for b in rows["bytes"]]))
    fields = BoxTargets(max_objects=4).decode(rows)
    boxes, labels = torch.from_numpy(np.stack(fields["boxes"])), torch.from_numpy(np.stack(fields["box_labels"]))
    model = Detector(num_classes=2, widths=(8, 16, 32, 32), head_width=16)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        loss = detection_loss(model(images), boxes, labels)["loss"]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]


@pytest.fixture
def tiny_scene_table(spark, cfg) -> str:
    name = f"{cfg.lake.database}.scenes_tiny"
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {cfg.lake.database}")
    spark.createDataFrame(_scenes(48)).repartition(2).write.saveAsTable(name)
    return petastorm_url(table_location(spark, name))


def test_training_round_trip_through_petastorm(tiny_scene_table: str, tmp_path) -> None:
    prep = Preprocessing(size=32)
    model = Detector(num_classes=2, widths=(8, 16, 32, 32), head_width=16)
    settings = TrainSettings(epochs=12, batch_size=16, lr=1e-2)
    history = train_detector(model, tiny_scene_table, prep, settings, torch.device("cpu"))
    assert len(history) == 12 and all(h["rows"] == 48 for h in history)
    assert history[-1]["loss"] < 0.5 * history[0]["loss"]
    scores = evaluate_detector(model, tiny_scene_table, prep, torch.device("cpu"), batch_size=32)
    assert scores["rows"] == 48 and scores["map50"] > 0.5

    arch_args = {"num_classes": 2, "in_channels": 3, "widths": [8, 16, 32, 32], "head_width": 16}
    save_model(model, Manifest.new("boxes", "detector", arch_args), tmp_path)
    loaded, _ = load_model(tmp_path, "boxes")
    images = torch.from_numpy(np.random.default_rng(1).normal(size=(3, 3, 32, 32)).astype(np.float32))
    expected, got = model.eval()(images), loaded(images)
    for name in expected:
        assert torch.equal(expected[name], got[name])
