"""Synthetic scenes end to end: synth -> ingest -> scene_truth -> a multi-label classifier from the join."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pyarrow.parquet as pq
from pyspark.testing import assertDataFrameEqual

from jobs.import_dataset import main as import_main
from jobs.ingest import ingest
from jobs.train import main as train_main
from lakelens.lake import read_table
from lakelens.scenes import generate_scenes
from lakelens.schemas import IMAGES, SCENE_TRUTH
from models.registry import load_model


def test_scene_truth_joins_images_and_trains_multi_label(spark, cfg, tmp_path: Path, capsys) -> None:
    scenes = tmp_path / "scenes"
    generate_scenes(scenes, n=40, seed=5, workers=1)
    ingest(spark, cfg, str(scenes / "images"), ingest_date=date(2026, 1, 2))
    common = ["--lake", cfg.lake.root, "--set", f"lake.database={cfg.lake.database}", "--set", "spark.master=local[2]"]
    assert import_main([*common, "scenes", "--dir", str(scenes)]) == 0
    assert import_main([*common, "scenes", "--dir", str(scenes)]) == 0  # a re-run replaces, never doubles

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

    registry = tmp_path / "registry"
    args = ["--data", "scene_truth", "--label-column", "labels", "--epochs", "2", "--size", "32", "--batch-size", "8",
            "--holdout-percent", "30", "--name", "shapes", "--set", f"models.registry={registry}"]  # fmt: skip
    assert train_main([*common, *args]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    _, manifest = load_model(registry, "shapes")
    assert manifest.arch_args["multi_label"] is True
    assert manifest.classes == sorted({shape for labels in truth["labels"] for shape in labels})
    assert 0.0 <= manifest.metrics["holdout_f1"] <= 1.0 and printed["holdout_f1"] == manifest.metrics["holdout_f1"]
    assert manifest.training["rows_train"] + manifest.training["rows_holdout"] == 40
