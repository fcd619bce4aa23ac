"""jobs.train end to end on a tiny lake table: snapshot, petastorm, torch, registry."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from images import coloured_image
from safetensors.torch import save_file

from jobs.train import main
from models.backbones import find_backbone
from models.classifier import Classifier
from models.data import Preprocessing, to_tensor_array
from models.pretrained import IMAGENET_MEAN, IMAGENET_STD
from models.registry import RegistryError, load_model
from models.text_image import query_vectors
from models.vocabulary import Vocabulary
from stages.training_rows import label_targets, load_snapshot, small_groups, transform_training_rows


@pytest.fixture
def labelled_table(spark, cfg) -> str:
    rows = pd.DataFrame(
        {
            "image_id": [f"img{i:03d}" for i in range(60)] + ["broken", "nobytes"],
            "bytes": [coloured_image(i % 3, i) for i in range(60)] + [b"junk", None],
            "error": [None] * 60 + ["decode failed", "file not found"],
            "label": [i % 3 for i in range(60)] + [0, 0],
        }
    )
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {cfg.lake.database}")
    spark.createDataFrame(rows, "image_id string, bytes binary, error string, label int").write.saveAsTable(
        f"{cfg.lake.database}.shapes"
    )
    return f"{cfg.lake.database}.shapes"


def test_training_rows_skip_errors_and_split_stably(spark, labelled_table: str) -> None:
    rows = transform_training_rows(spark.table(labelled_table), label_targets("label"), 20)
    first = {r["image_id"]: r["holdout"] for r in rows.collect()}
    again = {r["image_id"]: r["holdout"] for r in rows.collect()}
    assert first == again and len(first) == 60 and "broken" not in first
    assert 0 < sum(first.values()) < 30  # about a fifth held out


def test_an_embedder_snapshot_keeps_small_groups_side_by_side(spark, tmp_path: Path) -> None:
    # 90 groups of 1-3 rows (near-duplicates, same content) in a random order.
    labels = [g for g in range(90) for _ in range(1 + g % 3)]
    shuffled = pd.DataFrame({"image_id": [f"i{n}" for n in range(len(labels))], "label": labels}).sample(frac=1.0)
    rows = spark.createDataFrame(shuffled)
    assert small_groups(rows, "label", 16) and not small_groups(rows.withColumn("label", rows.label % 3), "label", 16)
    counts = load_snapshot({"train": rows, "holdout": rows.limit(5)}, str(tmp_path / "snap"), "label")
    assert counts == {"train": len(labels), "holdout": 5}
    seen = []
    for part in sorted((tmp_path / "snap" / "train").glob("*.parquet")):
        order = pq.read_table(part).column("label").to_pylist()
        # Each group is one run of rows in one file.
        runs = [label for i, label in enumerate(order) if i == 0 or order[i - 1] != label]
        assert len(runs) == len(set(runs))
        seen += runs
    assert sorted(seen) == list(range(90))


def test_train_job_registers_a_model_that_predicts(spark, cfg, labelled_table: str, tmp_path: Path, capsys) -> None:
    args = ["--lake", cfg.lake.root, "--set", f"lake.database={cfg.lake.database}", "--set",
            f"models.registry={tmp_path}", "--set", "spark.master=local[2]"]  # fmt: skip
    code = main([*args, "--data", "shapes", "--epochs", "10", "--size", "16", "--batch-size", "16",
                 "--holdout-percent", "25", "--classes", "red,green,blue", "--name", "colours",
                 "--where", "image_id >= 'img010'", "--eval-where", "image_id < 'img010'"])  # fmt: skip
    assert code == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (printed["model"], printed["version"]) == ("colours", "v1")

    model, manifest = load_model(tmp_path, "colours")
    assert manifest.classes == ["red", "green", "blue"] and manifest.architecture == "classifier"
    assert manifest.training["rows_train"] + manifest.training["rows_holdout"] == 50
    assert manifest.training["rows_eval"] == 10
    assert manifest.metrics["holdout_accuracy"] == 1.0 and manifest.metrics["eval_accuracy"] == 1.0
    assert manifest.command.startswith("python -m jobs.train --lake ")
    prep = Preprocessing.from_manifest(manifest.preprocessing)
    pixels = torch.from_numpy(to_tensor_array(coloured_image(2, 999), prep))[None]
    assert model(pixels)["logits"].argmax(1).item() == 2

    weights, manifest_file = tmp_path / "ext.safetensors", tmp_path / "ext.json"
    save_file(Classifier(num_classes=3).state_dict(), str(weights))
    usable = {"classes": ["red", "green", "blue"], "preprocessing": manifest.preprocessing}  # what annotate needs
    manifest_file.write_text(
        json.dumps({"name": "colours", "architecture": "classifier", "arch_args": {"num_classes": 3}, **usable})
    )
    assert main([*args, "--register", str(weights), "--manifest", str(manifest_file)]) == 0
    assert load_model(tmp_path, "colours")[1].version == "v2"


def test_train_job_embedder_separates_the_colours(spark, cfg, labelled_table: str, tmp_path: Path, capsys) -> None:
    args = ["--lake", cfg.lake.root, "--set", f"lake.database={cfg.lake.database}", "--set",
            f"models.registry={tmp_path}", "--set", "spark.master=local[2]"]  # fmt: skip
    code = main([*args, "--model", "embedder", "--data", "shapes", "--epochs", "6", "--size", "16",
                 "--batch-size", "24", "--dim", "8", "--holdout-percent", "25",
                 "--name", "colour-vectors"])  # fmt: skip
    assert code == 0
    model, manifest = load_model(tmp_path, "colour-vectors")
    assert manifest.architecture == "embedder" and manifest.arch_args == {"dim": 8, "in_channels": 3}
    assert manifest.metrics["holdout_recall_at_1"] == 1.0
    prep = Preprocessing.from_manifest(manifest.preprocessing)
    images = [coloured_image(label, seed) for seed in (500, 501) for label in (0, 1, 2)]
    vectors = model(torch.stack([torch.from_numpy(to_tensor_array(b, prep)) for b in images]))["vectors"]
    similarity = vectors @ vectors.T  # rows 0-2 and 3-5: red, green, blue twice
    for label in range(3):
        others = [similarity[label, other] for other in range(3, 6) if other != label + 3]
        assert all(similarity[label, label + 3] > other for other in others)


def test_train_job_starts_from_a_frozen_pretrained_backbone(
    spark, cfg, labelled_table: str, tmp_path: Path, capsys
) -> None:
    args = ["--lake", cfg.lake.root, "--set", f"lake.database={cfg.lake.database}", "--set",
            f"models.registry={tmp_path}", "--set", "spark.master=local[2]"]  # fmt: skip
    code = main([*args, "--data", "shapes", "--epochs", "4", "--size", "32", "--batch-size", "16",
                 "--holdout-percent", "25", "--classes", "red,green,blue", "--name", "colours-bb",
                 "--backbone", "mobilenet-v2-imagenet", "--freeze-backbone", "--lr", "1e-2"])  # fmt: skip
    assert code == 0
    model, manifest = load_model(tmp_path, "colours-bb")
    assert manifest.arch_args["backbone"] == "mobilenet_v2"
    assert manifest.training["backbone"] == "mobilenet-v2-imagenet v1" and manifest.training["backbone_frozen"]
    assert manifest.preprocessing == {"size": 32, "channels": 3, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    assert manifest.metrics["holdout_accuracy"] == 1.0
    # Frozen: the registered model's backbone is ImageNet's, parameter for parameter (the installed backbone's).
    imagenet = load_model(tmp_path, "mobilenet-v2-imagenet")[0].state_dict()
    kept = find_backbone(model).net.state_dict()
    assert kept and all(torch.equal(value, imagenet[key]) for key, value in kept.items())

    with pytest.raises(RegistryError, match="is a classifier, not a backbone"):  # refused before any work
        main([*args, "--data", "shapes", "--name", "x", "--backbone", "colours-bb"])


def test_train_job_text_image_puts_captions_near_their_images(spark, cfg, tmp_path: Path, capsys) -> None:
    captions = ["a red noisy square", "a green noisy square", "a blue noisy square"]
    rows = pd.DataFrame(
        {
            "image_id": [f"img{i:03d}" for i in range(60)],
            "bytes": [coloured_image(i % 3, i) for i in range(60)],
            "caption": [captions[i % 3] for i in range(60)],
            "colour": [i % 3 for i in range(60)],
        }
    )
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {cfg.lake.database}")
    spark.createDataFrame(rows).write.saveAsTable(f"{cfg.lake.database}.captioned")
    args = ["--lake", cfg.lake.root, "--set", f"lake.database={cfg.lake.database}", "--set",
            f"models.registry={tmp_path}", "--set", "spark.master=local[2]", "--data", "captioned", "--size", "16",
            "--holdout-percent", "25"]  # fmt: skip
    assert main([*args, "--model", "text_image", "--epochs", "6", "--batch-size", "12", "--dim", "8",
                 "--match-expr", "colour", "--negatives", "mined", "--name", "colour-text"]) == 0  # fmt: skip
    model, manifest = load_model(tmp_path, "colour-text")
    assert manifest.architecture == "text_image" and manifest.arch_args["text_tower"] == "words"
    assert {"negatives": "mined", "semi_hard": True, "match": "colour"}.items() <= manifest.training.items()
    assert "noisy" in manifest.vocabulary and manifest.metrics["holdout_recall_at_1"] == 1.0
    prep = Preprocessing.from_manifest(manifest.preprocessing)
    with torch.no_grad():
        images = model(torch.stack([torch.from_numpy(to_tensor_array(coloured_image(c, 900), prep)) for c in range(3)]))
    queries = query_vectors(model, ["a green square", "blue"], Vocabulary(manifest.vocabulary))
    assert (queries @ images["vectors"].T).argmax(dim=1).tolist() == [1, 2]

    assert main([*args, "--model", "embedder", "--loss", "pair", "--epochs", "6", "--batch-size", "24", "--dim", "8",
                 "--label-column", "colour", "--name", "colour-pairs"]) == 0  # fmt: skip
    _, manifest = load_model(tmp_path, "colour-pairs")
    assert manifest.training["loss"] == "pair" and manifest.metrics["holdout_verify_auc"] > 0.95
    assert -1 < manifest.metrics["holdout_verify_threshold"] < 1 and manifest.metrics["holdout_verify_tar"] > 0.5


@pytest.mark.parametrize("kind", ["colouriser_residual", "colouriser_hypercolumn"])
def test_train_job_colouriser_learns_colours_from_lightness(spark, cfg, labelled_table: str, tmp_path: Path, capsys,
                                                            kind: str) -> None:  # fmt: skip
    """Red, green and blue images have different lightness: a colouriser learns which chroma goes with which, and
    its images turned grey come back nearer the originals than grey."""
    args = ["--lake", cfg.lake.root, "--set", f"lake.database={cfg.lake.database}", "--set",
            f"models.registry={tmp_path}", "--set", "spark.master=local[2]"]  # fmt: skip
    assert main([*args, "--model", kind, "--data", "shapes", "--epochs", "10", "--size", "16", "--batch-size", "6",
                 "--lr", "0.01", "--holdout-percent", "25", "--name", "colours"]) == 0  # fmt: skip
    model, manifest = load_model(tmp_path, "colours")
    assert manifest.architecture == kind and manifest.arch_args == {}
    metrics = manifest.metrics
    assert metrics["holdout_psnr"] > metrics["holdout_grey_psnr"] + 3, metrics
    assert metrics["holdout_colourfulness"] > 0.5 * metrics["holdout_true_colourfulness"], metrics
    assert float(model.weights.max()) > float(model.weights.min())  # the bins' weights came from the images


def test_train_job_autoencoder_gives_its_images_back(spark, cfg, labelled_table: str, tmp_path: Path, capsys) -> None:
    """The denoising variant, trained through the job on the shapes table, gives held-out images back better than
    any constant image could (the mean image scores 9.4 dB: the images are solid colours with per-pixel noise, so
    26 dB is the ceiling), and its manifest records its noise; --noise is refused for other kinds."""
    args = ["--lake", cfg.lake.root, "--set", f"lake.database={cfg.lake.database}", "--set",
            f"models.registry={tmp_path}", "--set", "spark.master=local[2]"]  # fmt: skip
    assert main([*args, "--model", "autoencoder", "--data", "shapes", "--epochs", "15", "--size", "16",
                 "--batch-size", "6", "--lr", "0.01", "--holdout-percent", "25", "--dim", "8", "--noise", "0.25",
                 "--name", "ae"]) == 0  # fmt: skip
    model, manifest = load_model(tmp_path, "ae")
    assert manifest.architecture == "autoencoder"
    assert manifest.arch_args == {"code_dim": 8, "in_channels": 3, "noise": 0.25}
    assert manifest.metrics["holdout_psnr"] > 9.4 + 3, manifest.metrics  # dB, pixels in [0, 1]
    with pytest.raises(SystemExit):
        main([*args, "--model", "classifier", "--data", "shapes", "--noise", "0.5"])
    assert "--noise is for --model autoencoder" in capsys.readouterr().err
