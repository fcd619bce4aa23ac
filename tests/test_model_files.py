"""A user's own model, no code: ONNX graphs and torchvision-style state dicts registered against a manifest,
refused at registration when they cannot work, and run by annotate like any registry model."""

from __future__ import annotations

import dataclasses
import json
import shutil
from datetime import date
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import shared_folder
from test_pretrained import PHOTOS

from lakelens.config import Config, ModelsConfig
from lakelens.lake import read_table
from lakelens.schemas import LABELS
from models.model_files import register_model
from models.pretrained import imagenet_classes, install_pretrained, load_pretrained, preprocessing
from models.registry import RegistryError, load_model, vector_dim
from stages.annotate import annotate
from stages.ingest import ingest

ONNX_MODEL = "onnx-classifier"
TORCH_MODEL = "mobilenet-v2-imagenet"


class Exported(torch.nn.Module):
    """MobileNetV2's scores and vectors under names of the graph's own, as a user's export would have them."""

    def __init__(self) -> None:
        super().__init__()
        self.net = load_pretrained("mobilenet_v2")

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(images)
        return out["scores"], out["vectors"]


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("onnx") / "classifier.onnx"
    torch.onnx.export(
        Exported().eval(), (torch.zeros(1, 3, 224, 224),), str(path), input_names=["pixels"],
        output_names=["prob", "emb"], dynamic_axes={"pixels": {0: "n"}, "prob": {0: "n"}, "emb": {0: "n"}},
        dynamo=False,
    )  # fmt: skip
    return path


def manifest(tmp_path: Path, **changes) -> Path:
    fields = {
        "name": ONNX_MODEL, "architecture": "onnx",
        "arch_args": {"input": "pixels", "outputs": {"scores": "prob", "vectors": "emb"}},
        "preprocessing": preprocessing("mobilenet_v2").to_manifest(), "classes": list(imagenet_classes()),
        **changes,
    }  # fmt: skip
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(fields))
    return path


def test_an_onnx_graph_registers_with_its_outputs_and_runs_as_the_torch_model_does(onnx_file: Path, tmp_path: Path):
    entry = register_model(tmp_path / "reg", onnx_file, manifest(tmp_path))
    assert (entry.version, vector_dim(entry)) == ("v1", 1280)
    assert (tmp_path / "reg" / ONNX_MODEL / "v1" / "model.onnx").read_bytes() == onnx_file.read_bytes()
    model, _ = load_model(tmp_path / "reg", ONNX_MODEL)
    images = torch.rand(3, 3, 224, 224)
    with torch.inference_mode():
        ours, theirs = model(images), load_pretrained("mobilenet_v2")(images)
    assert torch.allclose(ours["scores"], theirs["scores"], atol=1e-4)
    assert torch.allclose(ours["vectors"], theirs["vectors"], atol=1e-4)


@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        ({"preprocessing": {**preprocessing("mobilenet_v2").to_manifest(), "size": 200}},
         r"takes input \['n', 3, 224, 224\] but the manifest's preprocessing gives \[N, 3, 200, 200\]"),
        ({"classes": list(imagenet_classes())[:999]},
         r"the manifest lists 999 classes but output 'scores' gives \(1000,\) per image"),
        ({"arch_args": {"input": "pixels", "outputs": {"scores": "probabilities"}}},
         r"the ONNX model has no output 'probabilities'; its outputs: "),
        ({"architecture": "classifier"}, r"is an ONNX graph: its manifest's architecture must be 'onnx'"),
    ],
)  # fmt: skip
def test_an_onnx_graph_that_does_not_fit_its_manifest_is_refused(onnx_file, tmp_path: Path, change, refusal) -> None:
    with pytest.raises(RegistryError, match=refusal):
        register_model(tmp_path / "reg", onnx_file, manifest(tmp_path, **change))
    assert not (tmp_path / "reg" / ONNX_MODEL).exists()


def test_files_that_are_not_models_are_refused_saying_why(tmp_path: Path) -> None:
    (tmp_path / "bad.onnx").write_bytes(b"\x08\x07 not a graph")
    with pytest.raises(RegistryError, match="onnxruntime cannot load it"):
        register_model(tmp_path / "reg", tmp_path / "bad.onnx", manifest(tmp_path))
    torch.save({"weights": torch.zeros(2), "hook": Path("/etc/passwd")}, tmp_path / "evil.pth")  # an object: refused
    with pytest.raises(RegistryError, match="not a state dict torch can read with weights_only=True"):
        register_model(tmp_path / "reg", tmp_path / "evil.pth", manifest(tmp_path))
    (tmp_path / "model.h5").write_bytes(b"")
    with pytest.raises(RegistryError, match=r"must be .safetensors, .pth/.pt \(a state dict\) or .onnx"):
        register_model(tmp_path / "reg", tmp_path / "model.h5", manifest(tmp_path))


def test_a_torchvision_state_dict_registers_as_safetensors(tmp_path: Path) -> None:
    torch.save(load_pretrained("mobilenet_v2").state_dict(), tmp_path / "mobilenet_v2.pth")
    fields = {"architecture": "mobilenet_v2", "arch_args": {"num_classes": 1000}, "name": "mine"}
    entry = register_model(tmp_path / "reg", tmp_path / "mobilenet_v2.pth", manifest(tmp_path, **fields))
    assert (tmp_path / "reg" / "mine" / entry.version / "weights.safetensors").is_file()
    model, _ = load_model(tmp_path / "reg", "mine")
    images = torch.rand(2, 3, 224, 224)
    with torch.inference_mode():
        assert torch.equal(model(images)["logits"], load_pretrained("mobilenet_v2")(images)["logits"])


@pytest.mark.shared_data
def test_annotate_gives_the_onnx_export_the_torch_model_s_labels_on_real_photos(
    spark, cfg: Config, onnx_file: Path, tmp_path: Path
) -> None:
    folder = shared_folder("coco128", "images")
    (tmp_path / "photos").mkdir()
    for path in PHOTOS:
        shutil.copy(folder / path, tmp_path / "photos" / Path(path).name)
    registry = tmp_path / "models"
    install_pretrained(registry, [TORCH_MODEL])
    register_model(registry, onnx_file, manifest(tmp_path))
    labels = {}
    for model in (TORCH_MODEL, ONNX_MODEL):
        settings = dataclasses.replace(
            cfg.annotate, tasks=("classify",), models={**cfg.annotate.models, "classify": model}
        )
        lake = dataclasses.replace(cfg, models=ModelsConfig(str(registry)), annotate=settings)
        if model == TORCH_MODEL:
            ingest(spark, lake, str(tmp_path / "photos"), ingest_date=date(2026, 1, 2))
        assert annotate(spark, lake, ("classify",)).tasks[0].good == len(PHOTOS)
        rows = read_table(spark, lake, LABELS).where(f"model = '{model}'").collect()
        labels[model] = {r.image_id: (r.label, r.score) for r in rows}
    assert {i: label for i, (label, _) in labels[ONNX_MODEL].items()} == {
        i: label for i, (label, _) in labels[TORCH_MODEL].items()
    }
    scores = [(labels[ONNX_MODEL][i][1], labels[TORCH_MODEL][i][1]) for i in labels[TORCH_MODEL]]
    assert np.allclose(*zip(*scores, strict=True), atol=1e-4)  # the stated tolerance: 1e-4 on a softmax score
    assert sorted(label for label, _ in labels[ONNX_MODEL].values()) == sorted(PHOTOS.values())
