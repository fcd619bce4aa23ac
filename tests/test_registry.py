"""The model registry: versioned save/load with identical outputs, and loud refusals of bad entries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from models.classifier import Classifier
from models.embedder import Embedder
from models.registry import (
    Manifest,
    RegistryError,
    install_bundled,
    load_model,
    model_names,
    register_weights,
    save_model,
)

ARGS = {"num_classes": 3, "in_channels": 1, "widths": [4, 8]}


def usable_manifest(**fields) -> dict:
    """A manifest of ``trained()``'s classifier that annotate can run: its class names and its input."""
    prep = {"size": 16, "channels": 1, "mean": [0.5], "std": [0.25]}
    return {"name": "ext", "architecture": "classifier", "arch_args": ARGS, "classes": ["a", "b", "c"],
            "preprocessing": prep, **fields}  # fmt: skip


def trained() -> Classifier:
    torch.manual_seed(1)
    model = Classifier(**ARGS)
    model(torch.randn(8, 1, 16, 16))  # batch-norm running statistics move away from their defaults
    return model.eval()


def test_save_then_load_gives_identical_outputs(tmp_path: Path) -> None:
    model = trained()
    entry = save_model(model, Manifest.new("tiny", "classifier", ARGS, classes=["a", "b", "c"]), tmp_path)
    assert entry.version == "v1" and len(entry.weights_sha256) == 64 and entry.created
    loaded, manifest = load_model(tmp_path, "tiny")
    assert manifest == entry
    x = torch.randn(5, 1, 16, 16)
    assert torch.equal(loaded(x)["logits"], model(x)["logits"])


def test_embedder_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(2)
    model = Embedder(dim=8, in_channels=1, widths=(4, 8)).eval()
    save_model(model, Manifest.new("vec", "embedder", {"dim": 8, "in_channels": 1, "widths": [4, 8]}), tmp_path)
    loaded, _ = load_model(tmp_path, "vec")
    x = torch.randn(3, 1, 16, 16)
    assert torch.equal(loaded(x)["vectors"], model(x)["vectors"])


def test_versions_increase_and_latest_is_default(tmp_path: Path) -> None:
    save_model(trained(), Manifest.new("tiny", "classifier", ARGS), tmp_path)
    second = save_model(trained(), Manifest.new("tiny", "classifier", ARGS, metrics={"accuracy": 0.5}), tmp_path)
    assert second.version == "v2"
    assert load_model(tmp_path, "tiny")[1].metrics == {"accuracy": 0.5}
    assert load_model(tmp_path, "tiny", "v1")[1].version == "v1"
    with pytest.raises(RegistryError, match="version v1 already exists"):
        save_model(trained(), Manifest.new("tiny", "classifier", ARGS, version="v1"), tmp_path)


def test_missing_entries_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="no model named 'nope'"):
        load_model(tmp_path, "nope")
    save_model(trained(), Manifest.new("tiny", "classifier", ARGS), tmp_path)
    with pytest.raises(RegistryError, match="no version v9 of model 'tiny'"):
        load_model(tmp_path, "tiny", "v9")


def test_unknown_architecture_is_refused(tmp_path: Path) -> None:
    entry = save_model(trained(), Manifest.new("tiny", "classifier", ARGS), tmp_path)
    path = tmp_path / "tiny" / entry.version / "manifest.json"
    path.write_text(path.read_text().replace('"architecture": "classifier"', '"architecture": "os.system"'))
    with pytest.raises(
        RegistryError,
        match="unknown architecture 'os.system'; known: autoencoder, captioner, classifier, colouriser_hypercolumn, "
        "colouriser_residual, detector, embedder, segmenter, text_image, and the pretrained backbones",
    ):
        load_model(tmp_path, "tiny")


def test_weights_that_do_not_fit_the_architecture_are_refused(tmp_path: Path) -> None:
    weights = tmp_path / "other.safetensors"
    save_file(Classifier(num_classes=5, in_channels=1, widths=(4, 8)).state_dict(), str(weights))
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"name": "ext", "architecture": "classifier", "arch_args": ARGS}))
    with pytest.raises(
        RegistryError, match=r"do not match architecture classifier.*head.2.weight is \(5, 8\), expected \(3, 8\)"
    ):
        register_weights(tmp_path / "reg", weights, manifest)
    assert not (tmp_path / "reg" / "ext").exists()


def test_external_weights_register_as_a_new_version(tmp_path: Path) -> None:
    model = trained()
    weights = tmp_path / "mine.safetensors"
    save_file(model.state_dict(), str(weights))
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps(usable_manifest(command="elsewhere")))
    entry = register_weights(tmp_path / "reg", weights, manifest)
    loaded, _ = load_model(tmp_path / "reg", "ext")
    x = torch.randn(2, 1, 16, 16)
    assert entry.command == "elsewhere" and torch.equal(loaded(x)["logits"], model(x)["logits"])


def test_corrupt_or_changed_weights_are_refused(tmp_path: Path) -> None:
    entry = save_model(trained(), Manifest.new("tiny", "classifier", ARGS), tmp_path)
    weights = tmp_path / "tiny" / entry.version / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(RegistryError, match="changed since they were registered"):
        load_model(tmp_path, "tiny")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00not a safetensors file")
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"name": "g", "architecture": "classifier", "arch_args": ARGS}))
    with pytest.raises(RegistryError, match="is not a readable safetensors file"):
        register_weights(tmp_path / "reg", garbage, manifest)


def test_malformed_manifest_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "m.json"
    bad.write_text(json.dumps({"name": "x", "architecture": "classifier", "arch_args": {}, "pickle": "yes"}))
    with pytest.raises(RegistryError, match=r"unknown fields \['pickle'\]"):
        register_weights(tmp_path, tmp_path / "w", bad)
    bad.write_text("{not json")
    with pytest.raises(RegistryError, match="is not valid JSON"):
        register_weights(tmp_path, tmp_path / "w", bad)


def test_install_bundled_copies_what_the_registry_lacks(tmp_path: Path) -> None:
    bundled, registry = tmp_path / "bundled", tmp_path / "registry"
    for name in ("tiny", "other"):
        save_model(trained(), Manifest.new(name, "classifier", ARGS), bundled)
    save_model(trained(), Manifest.new("tiny", "classifier", ARGS, command="the user's own"), registry)

    copied = install_bundled(registry, bundled)
    assert [m.name for m in copied] == ["other"] and model_names(registry) == ["other", "tiny"]
    assert load_model(registry, "tiny")[1].command == "the user's own"  # an existing model is never replaced
    assert load_model(registry, "other")[1] == load_model(bundled, "other")[1]
    assert install_bundled(registry, bundled) == []  # a re-run changes nothing


def test_install_bundled_refuses_changed_weights(tmp_path: Path) -> None:
    bundled = tmp_path / "bundled"
    save_model(trained(), Manifest.new("tiny", "classifier", ARGS), bundled)
    save_file({"w": torch.zeros(1)}, str(bundled / "tiny" / "v1" / "weights.safetensors"))
    with pytest.raises(RegistryError, match="changed since they were registered"):
        install_bundled(tmp_path / "registry", bundled)
    assert model_names(tmp_path / "registry") == []


@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        ({"classes": ["a", "b"]}, r"lists 2 classes but the classifier's head has 3 \(arch_args.num_classes\)"),
        ({"classes": []}, r"lists 0 classes but the classifier's head has 3"),
        ({"preprocessing": {"size": -3, "channels": 1, "mean": [0.5], "std": [0.25]}}, r"size must be .* got -3"),
        ({"preprocessing": {}}, r"preprocessing \{\} is not usable .* it needs size"),
        ({"preprocessing": {"size": 16, "channels": 1, "mean": [0.5], "std": [0.0]}}, r"std must be > 0"),
        ({"preprocessing": {"size": 16}}, r"gives 3 channels but the classifier takes 1"),
    ],
)
def test_a_manifest_its_model_cannot_work_with_is_refused_at_registration(tmp_path: Path, change, refusal) -> None:
    weights = tmp_path / "mine.safetensors"
    save_file(trained().state_dict(), str(weights))
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps(usable_manifest(**change)))
    with pytest.raises(RegistryError, match=refusal):
        register_weights(tmp_path / "reg", weights, manifest)
    assert not (tmp_path / "reg" / "ext").exists()


def test_a_model_that_fails_on_its_own_input_is_refused_at_registration(tmp_path: Path) -> None:
    from models.segmenter import Segmenter

    args = {"num_classes": 2, "in_channels": 3, "widths": [4, 8, 16]}
    weights = tmp_path / "seg.safetensors"
    save_file(Segmenter(**args).state_dict(), str(weights))
    manifest = tmp_path / "m.json"
    prep = {"size": 10, "channels": 3, "mean": [0.5] * 3, "std": [0.25] * 3}  # 10 is not a multiple of 4
    manifest.write_text(json.dumps({"name": "seg", "architecture": "segmenter", "arch_args": args,
                                    "classes": ["background", "x"], "preprocessing": prep}))  # fmt: skip
    with pytest.raises(RegistryError, match=r"fails on its manifest's input \(3 x 10 x 10\)"):
        register_weights(tmp_path / "reg", weights, manifest)
