"""Synthetic scenes end to end: synth -> ingest -> scene_truth -> every model kind trained by jobs.train."""

from __future__ import annotations

import json
import uuid
from datetime import date
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from pyspark.testing import assertDataFrameEqual

from jobs.import_dataset import main as import_main
from jobs.train import main as train_main
from lakelens.config import Config, load_config
from lakelens.lake import read_table
from lakelens.scenes import SCENE_MASK_CLASSES, generate_scenes
from lakelens.schemas import IMAGES, SCENE_TRUTH
from models.registry import Manifest, load_model
from stages.ingest import ingest

SCENES = 40


@pytest.fixture(scope="module")
def scene_lake(spark, lake_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, Path]:
    """A database with 40 ingested scenes and their scene_truth, shared by this module's tests."""
    cfg = load_config(
        overrides=["spark.master=local[2]", f"lake.root={lake_root}", f"lake.database=t_{uuid.uuid4().hex[:10]}"]
    )
    scenes = tmp_path_factory.mktemp("scenes")
    generate_scenes(scenes, n=SCENES, seed=5, workers=1)
    ingest(spark, cfg, str(scenes / "images"), ingest_date=date(2026, 1, 2))
    for _ in range(2):  # a re-run replaces, never doubles
        assert import_main([*_common(cfg), "scenes", "--dir", str(scenes)]) == 0
    return cfg, scenes


def _common(cfg: Config) -> list[str]:
    return ["--lake", cfg.lake.root, "--set", f"lake.database={cfg.lake.database}", "--set", "spark.master=local[2]"]


def _train(cfg: Config, registry: Path, *args: str) -> Manifest:
    """Runs jobs.train on scene_truth; returns the manifest of the model it registered."""
    common = [*_common(cfg), "--data", "scene_truth", "--set", f"models.registry={registry}", "--holdout-percent", "30"]
    assert train_main([*common, *args]) == 0
    return load_model(registry, args[args.index("--name") + 1])[1]


def test_scene_truth_joins_images(spark, scene_lake) -> None:
    cfg, scenes = scene_lake
    truth = pq.read_table(scenes / "ground_truth.parquet").to_pandas()
    expected = spark.createDataFrame(
        [(r.image_id, list(r.labels)) for r in truth.itertuples()], "image_id string, labels array<string>"
    )
    joined = (
        read_table(spark, cfg, SCENE_TRUTH)
        .join(read_table(spark, cfg, IMAGES), "image_id")
        .select("image_id", "labels")
    )
    assertDataFrameEqual(joined, expected)


def test_multi_label_classifier(scene_lake, tmp_path: Path, capsys) -> None:
    cfg, scenes = scene_lake
    manifest = _train(cfg, tmp_path, "--label-column", "labels", "--epochs", "2", "--size", "32", "--batch-size", "8",
                      "--name", "shapes")  # fmt: skip
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    truth = pq.read_table(scenes / "ground_truth.parquet").to_pandas()
    assert manifest.arch_args["multi_label"] is True
    assert manifest.classes == sorted({shape for labels in truth["labels"] for shape in labels})
    assert 0.0 <= manifest.metrics["holdout_f1"] <= 1.0 and printed["holdout_f1"] == manifest.metrics["holdout_f1"]
    assert manifest.training["rows_train"] + manifest.training["rows_holdout"] == SCENES


# Scenes with the same number of objects are positives: every held-out part has some (the real runs use content).
OBJECT_COUNT = "size(labels)"


@pytest.mark.parametrize(
    ("kind", "metric", "extra"),
    [
        ("detector", "holdout_map50", []),
        ("segmenter", "holdout_miou", []),
        ("captioner", "holdout_bleu4_greedy", []),
        ("embedder", "holdout_recall_at_1", ["--label-expr", OBJECT_COUNT]),
    ],
)
def test_every_kind_trains_from_the_lake(scene_lake, tmp_path: Path, kind: str, metric: str, extra: list) -> None:
    cfg, scenes = scene_lake
    truth = pq.read_table(scenes / "ground_truth.parquet").to_pandas()
    manifest = _train(cfg, tmp_path, "--model", kind, "--epochs", "1", "--size", "32", "--batch-size", "8",
                      "--name", kind, *extra)  # fmt: skip
    assert manifest.architecture == kind and 0.0 <= manifest.metrics[metric] <= 1.0
    assert manifest.training["rows_train"] + manifest.training["rows_holdout"] == SCENES
    if kind == "detector":
        assert manifest.classes == sorted({shape for labels in truth["labels"] for shape in labels})
    if kind == "segmenter":
        assert manifest.classes == list(SCENE_MASK_CLASSES)
    if kind == "captioner":
        words = {word for caption in truth["caption"] for word in caption.split()}
        learnt = {word for word in manifest.vocabulary if not word.startswith("<")}
        assert learnt <= words and len(learnt) >= len(words) // 2
    if kind == "embedder":
        assert manifest.training["target_column"] == OBJECT_COUNT and manifest.metrics["holdout_queries"] > 0


def test_the_embedder_refuses_lists_of_labels(scene_lake, tmp_path: Path) -> None:
    cfg, _ = scene_lake
    with pytest.raises(ValueError, match="one label per image"):
        _train(cfg, tmp_path, "--model", "embedder", "--label-column", "labels", "--name", "nope")
    assert not (tmp_path / "nope").exists()
