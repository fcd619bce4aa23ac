"""Pretrained backbones inside the five models: the ImageNet layers load, run at every stride, survive the registry,
stay put when frozen and learn slower when fine-tuned; and the multi-label mAP that scores them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.backbones import LEVEL_CHANNELS, Backbone, find_backbone
from models.captioner import Captioner
from models.classifier import Classifier
from models.detector import Detector
from models.embedder import Embedder
from models.pretrained import load_pretrained, load_state_dict
from models.registry import Manifest, load_model, save_model
from models.segmenter import Segmenter
from models.train_loop import BACKBONE_LR_SCALE, Optimiser, TrainSettings, mean_average_precision

ARCHS = tuple(LEVEL_CHANNELS)


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    """Two smooth random RGB images, 64 x 64, roughly ImageNet-normalised."""
    torch.manual_seed(0)
    return torch.nn.functional.interpolate(torch.randn(2, 3, 8, 8), size=64, mode="bilinear")


@pytest.mark.parametrize("arch", ARCHS)
def test_a_backbone_holds_the_imagenet_layers_and_gives_every_stride(arch: str, photos: torch.Tensor) -> None:
    backbone = Backbone(arch)
    backbone.load_pretrained(load_state_dict(arch))
    levels = backbone.eval()(photos)
    assert [tuple(m.shape) for m in levels] == [
        (2, c, 64 // s, 64 // s) for c, s in zip(LEVEL_CHANNELS[arch], (2, 4, 8, 16, 32), strict=True)
    ]
    # The last map, pooled, is exactly the pretrained network's own pooled features.
    with torch.no_grad():
        expected = load_pretrained(arch)(photos)["features"]
    torch.testing.assert_close(levels[-1].mean(dim=(2, 3)), expected)


def test_a_backbone_refuses_weights_of_another_architecture_and_grey_input() -> None:
    with pytest.raises(ValueError, match="not those of a mobilenet_v2"):
        Backbone("mobilenet_v2").load_pretrained(load_state_dict("efficientnet_lite0"))
    with pytest.raises(ValueError, match="RGB"):
        Classifier(3, in_channels=1, backbone="mobilenet_v2")
    with pytest.raises(ValueError, match="multiples of 32"):
        Backbone("mobilenet_v2")(torch.zeros(1, 3, 48, 48))


MODELS = {
    "classifier": (lambda b: Classifier(5, multi_label=True, backbone=b), lambda m, x: m(x)["scores"]),
    "embedder": (lambda b: Embedder(dim=16, backbone=b), lambda m, x: m(x)["vectors"]),
    "detector": (lambda b: Detector(4, anchor_sizes=(0.2, 0.8), backbone=b), lambda m, x: m(x)["logits"]),
    "segmenter": (lambda b: Segmenter(3, backbone=b), lambda m, x: m(x)["logits"]),
    "captioner": (lambda b: Captioner(12, backbone=b), lambda m, x: m.greedy(x, max_length=4)[1]),
}


@pytest.mark.parametrize("kind", MODELS)
def test_each_model_runs_on_a_pretrained_backbone_and_survives_the_registry(kind: str, photos, tmp_path) -> None:
    make, run = MODELS[kind]
    model = make("mobilenet_v2")
    find_backbone(model).load_pretrained(load_state_dict("mobilenet_v2"))
    with torch.no_grad():
        before = run(model.eval(), photos)
    args = {"classifier": {"num_classes": 5, "multi_label": True}, "embedder": {"dim": 16},
            "detector": {"num_classes": 4, "anchor_sizes": [0.2, 0.8]}, "segmenter": {"num_classes": 3},
            "captioner": {"vocab_size": 12}}[kind]  # fmt: skip
    names = {"classes": [f"c{i}" for i in range(args.get("num_classes", 0))]} if "num_classes" in args else {}
    if kind == "captioner":
        names = {"vocabulary": ["<pad>", "<bos>", "<eos>", "<unk>", *(f"w{i}" for i in range(8))]}
    manifest = Manifest.new("m", kind, {**args, "backbone": "mobilenet_v2"}, **names)
    save_model(model, manifest, tmp_path)
    loaded, _ = load_model(tmp_path, "m")
    with torch.no_grad():
        torch.testing.assert_close(run(loaded, photos), before)
    assert find_backbone(loaded) is not None and find_backbone(make(None)) is None


def _train_steps(model: torch.nn.Module, photos: torch.Tensor, lr: float = 1e-2) -> Optimiser:
    optimiser = Optimiser(model, TrainSettings(epochs=1, lr=lr), torch.device("cpu"))
    model.train()
    for _ in range(2):
        logits = model(photos)["logits"]
        optimiser.step(model.loss(logits, torch.ones_like(logits)))
    return optimiser


def test_a_frozen_backbone_keeps_its_weights_and_statistics(photos: torch.Tensor) -> None:
    model = Classifier(5, multi_label=True, backbone="mobilenet_v2")
    backbone = find_backbone(model)
    backbone.load_pretrained(load_state_dict("mobilenet_v2"))
    backbone.requires_grad_(False)
    start = {k: v.clone() for k, v in backbone.state_dict().items()}
    head = model.head[-1].weight.clone()
    _train_steps(model, photos)
    assert all(torch.equal(v, backbone.state_dict()[k]) for k, v in start.items())  # weights and BN statistics
    assert not torch.equal(head, model.head[-1].weight)


def test_a_fine_tuned_backbone_learns_at_its_own_slower_rate_with_imagenet_statistics(photos: torch.Tensor) -> None:
    model = Classifier(5, multi_label=True, backbone="efficientnet_lite0")
    backbone = find_backbone(model)
    backbone.load_pretrained(load_state_dict("efficientnet_lite0"))
    statistics = {k: v.clone() for k, v in backbone.state_dict().items() if "running" in k}
    optimiser = _train_steps(model, photos, lr=1e-2)
    rates = sorted(group["initial_lr"] for group in optimiser.optimiser.param_groups)
    assert rates == pytest.approx([1e-2 * BACKBONE_LR_SCALE, 1e-2])
    assert all(torch.equal(v, backbone.state_dict()[k]) for k, v in statistics.items())
    assert not torch.equal(backbone.net._conv_stem.weight, load_state_dict("efficientnet_lite0")["_conv_stem.weight"])


def test_mean_average_precision_ranks_each_class() -> None:
    scores = np.array([[0.9, 0.1, 0.5], [0.8, 0.7, 0.5], [0.3, 0.2, 0.5], [0.1, 0.6, 0.5]])
    targets = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 0]], dtype=bool)
    # class 0: positives at ranks 1 and 3 -> (1 + 2/3) / 2; class 1: rank 1 -> 1; class 2 has no positive
    value, classes = mean_average_precision(scores, targets)
    assert classes == 2 and value == pytest.approx((5 / 6 + 1) / 2)
    assert np.isnan(mean_average_precision(scores, np.zeros_like(targets))[0])
