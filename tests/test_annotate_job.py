"""jobs.annotate on a small lake: every task's table, rows in = rows out, incremental re-runs, new versions."""

from __future__ import annotations

import dataclasses
import io
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image, ImageOps
from pyspark.sql import functions as F

from lakelens.config import ANNOTATE_TASKS, Config, ModelsConfig
from lakelens.lake import qualified, read_table
from lakelens.scenes import generate_scenes
from lakelens.schemas import ANNOTATE_LEFT_OUT, COLOURISED, EMBEDDINGS, IMAGES, LABELS, RECONSTRUCTIONS
from lakelens.tasks import TASKS
from models.colour import rgb_to_lab
from models.registry import RegistryError, install_bundled, load_model, save_model
from stages.annotate import ModelFailedError, annotate, transform_pending_images
from stages.ingest import ingest
from udfs.embed import EmbedPredictor
from udfs.predictor import predict_frame


@pytest.fixture
def scene_lake(spark, cfg: Config, tmp_path: Path) -> Config:
    """Eight scenes and one corrupt file ingested; the bundled models in the lake's registry."""
    folder = tmp_path / "scenes"
    generate_scenes(folder, n=8, seed=23, workers=1)
    (folder / "images" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    lake_cfg = dataclasses.replace(cfg, models=ModelsConfig(str(tmp_path / "models")))
    install_bundled(lake_cfg.models.registry)
    counts = ingest(spark, lake_cfg, str(folder / "images"))
    assert (counts.good, counts.errors) == (8, 1)
    return lake_cfg


def task_rows(spark, cfg: Config, task: str):
    """The rows of ``task``'s table from its configured model (embed and search share ``embeddings``)."""
    return read_table(spark, cfg, TASKS[task].table).where(F.col("model") == cfg.annotate.models[task])


def test_every_task_writes_one_row_per_image_and_a_rerun_adds_nothing(spark, scene_lake: Config) -> None:
    seen_then: list[tuple[int, int]] = []  # (embeddings, labels) rows when annotate says embeddings are written

    def embeddings_written() -> None:
        seen_then.append(tuple(read_table(spark, scene_lake, t).count() for t in (EMBEDDINGS, LABELS)))

    first = annotate(spark, scene_lake, ANNOTATE_TASKS, embeddings_written)
    assert seen_then == [(9, 0)]  # the similar-image index may start; the other tables come after
    # The scenes are in colour: colourise leaves them out (no row), and writes the broken file's error row.
    expected = {task: (task, 9, 8, 1, 0, 0) for task in ANNOTATE_TASKS} | {"colourise": ("colourise", 1, 0, 1, 0, 8)}
    assert [(c.task, c.annotated, c.good, c.errors, c.done_before, c.left_out) for c in first.tasks] == [
        expected[task] for task in ANNOTATE_TASKS
    ]
    assert (first.images, first.annotated, first.rows, first.errors) == (9, 9, 9 * len(TASKS) - 8, len(TASKS))
    assert dict(first.tasks[ANNOTATE_TASKS.index("colourise")].kinds) == {"grey": 0, "tinted": 0, "colour": 8}
    versions = {c.task: c.version for c in first.tasks}
    assert versions == {"classify": "v1", "detect": "v1", "segment": "v1", "caption": "v2", "embed": "v2",
                        "search": "v1", "colourise": "v1", "autoencode": "v1"}  # fmt: skip
    for task in TASKS:
        rows = task_rows(spark, scene_lake, task)
        assert rows.count() == (1 if task == "colourise" else 9), task
        bad = rows.where(F.col("error").isNotNull()).first()
        assert bad["error"].startswith("ingest error: "), task
        assert (bad["model"], bad["model_version"]) == (scene_lake.annotate.models[task], versions[task])
    codes = read_table(spark, scene_lake, EMBEDDINGS).where(F.col("model") == scene_lake.annotate.models["autoencode"])
    assert codes.count() == 9  # the autoencoder's codes, for similar-image search
    left = read_table(spark, scene_lake, ANNOTATE_LEFT_OUT).groupBy("task", "kind", "model").count().collect()
    assert [tuple(r) for r in left] == [("colourise", "colour", "colouriser", 8)]

    again = annotate(spark, scene_lake, ANNOTATE_TASKS)
    assert (again.annotated, [(c.annotated, c.done_before) for c in again.tasks]) == (0, [(0, 9)] * len(ANNOTATE_TASKS))
    assert all(task_rows(spark, scene_lake, t).count() == (1 if t == "colourise" else 9) for t in TASKS)

    # What SQL users ask: the most confident images of a label, big segments, captions with a word.
    db = scene_lake.lake.database
    ranked = spark.sql(
        f"SELECT image_id, o.score FROM {db}.detections LATERAL VIEW explode(objects) t AS o "
        "WHERE o.label = 'circle' ORDER BY o.score DESC"
    ).collect()
    scores = [r.score for r in ranked]
    assert scores == sorted(scores, reverse=True) and all(0.3 <= s <= 1 for s in scores)
    big = spark.sql(
        f"SELECT image_id, class, share FROM {db}.segments LATERAL VIEW explode(fractions) t AS class, share "
        "WHERE class = 'background' AND share > 0.3"
    ).count()
    assert big == 8  # every scene is mostly background
    worded = spark.sql(f"SELECT caption FROM {db}.captions WHERE array_contains(split(caption, ' '), 'a')").count()
    assert worded == 8


def test_the_spark_rows_are_the_predict_cores_rows(spark, scene_lake: Config) -> None:
    annotate(spark, scene_lake, ["embed"])
    written = (
        read_table(spark, scene_lake, EMBEDDINGS)
        .select("image_id", "vector", "error", "model", "model_version")
        .toPandas()
        .sort_values("image_id", ignore_index=True)
    )
    images = read_table(spark, scene_lake, IMAGES).select("image_id", "bytes", "error").toPandas()
    model, manifest = load_model(scene_lake.models.registry, "embedder")
    expected = predict_frame(EmbedPredictor(model, manifest, torch.device("cpu")), images.sort_values("image_id"))
    expected = expected.sort_values("image_id", ignore_index=True)
    pd.testing.assert_frame_equal(written.drop(columns="vector"), expected.drop(columns="vector"))
    good = expected.error.isna()
    np.testing.assert_allclose(np.stack(written.vector[good]), np.stack(expected.vector[good]), atol=1e-5)
    assert written.vector[~good].isna().all()


def test_a_new_model_version_annotates_everything_again_beside_the_old(spark, scene_lake: Config) -> None:
    annotate(spark, scene_lake, ["classify", "embed"])
    model, manifest = load_model(scene_lake.models.registry, "embedder")
    save_model(
        model, dataclasses.replace(manifest, version="", weights_sha256="", created=""), scene_lake.models.registry
    )
    counts = annotate(spark, scene_lake, ["classify", "embed"])
    assert counts.annotated == 9
    assert [(c.task, c.version, c.annotated, c.done_before) for c in counts.tasks] == [
        ("classify", "v1", 0, 9), ("embed", "v3", 9, 0),
    ]  # fmt: skip
    assert read_table(spark, scene_lake, TASKS["classify"].table).count() == 9
    versions = spark.sql(
        f"SELECT model_version, count(*) AS n FROM {qualified(scene_lake, EMBEDDINGS)} GROUP BY model_version"
    ).collect()
    assert sorted((r.model_version, r.n) for r in versions) == [("v2", 9), ("v3", 9)]


def test_pending_images_are_read_from_the_partitions_of_their_dates_on(spark, tmp_path: Path) -> None:
    nights = [("a", date(2026, 1, 1)), ("b", date(2026, 1, 2)), ("c", date(2026, 1, 3))]
    schema = "image_id string, bytes binary, error string, ingest_date date"
    images = spark.createDataFrame([(i, i.encode(), None, day) for i, day in nights], schema)
    images.write.partitionBy("ingest_date").parquet(str(tmp_path / "images"))
    table = spark.read.parquet(str(tmp_path / "images"))
    pending = spark.createDataFrame([("b", True), ("c", False)], "image_id string, todo_classify boolean")
    found = transform_pending_images(table, pending, date(2026, 1, 2), broadcast=True)
    assert sorted(tuple(r) for r in found.collect()) == [("b", b"b", None, True), ("c", b"c", None, False)]
    plan = found._jdf.queryExecution().executedPlan().toString()
    assert "PartitionFilters: [isnotnull(ingest_date" in plan and "(ingest_date#" in plan and ">= 2026-01-02" in plan
    assert "BroadcastHashJoin" in plan


def test_a_missing_model_fails_naming_the_remedy(spark, cfg: Config, tmp_path: Path) -> None:
    empty = dataclasses.replace(cfg, models=ModelsConfig(str(tmp_path / "none")))
    with pytest.raises(RegistryError, match="caption: no model named 'captioner'.*install the bundled defaults"):
        annotate(spark, empty, ["caption"])


def test_a_model_that_fails_on_every_image_fails_the_job_and_its_images_are_retried(spark, scene_lake: Config) -> None:
    registry = scene_lake.models.registry
    model, manifest = load_model(registry, "segmenter")
    side = {**manifest.preprocessing, "size": 10}  # a side the segmenter cannot halve three times
    entry = save_model(model, dataclasses.replace(manifest, name="seg", version="", weights_sha256="", created="",
                                                  preprocessing=side), registry)  # fmt: skip
    broken = dataclasses.replace(
        scene_lake, annotate=dataclasses.replace(scene_lake.annotate, models={
            **scene_lake.annotate.models, "segment": "seg"}),
    )  # fmt: skip
    with pytest.raises(ModelFailedError, match=r"segment: model seg v1 failed on every image it ran on \(8\): "
                       r"model failed: ValueError: image sides must be multiples of"):  # fmt: skip
        annotate(spark, broken, ["segment", "embed"])
    assert read_table(spark, broken, EMBEDDINGS).count() == 9  # the other task's rows are kept
    segments = read_table(spark, broken, TASKS["segment"].table).collect()
    assert [r.error.split(":")[0] for r in segments] == ["ingest error"]  # the image's own error stays a row

    # The user mends the manifest in place (same weights, same version): the images the model failed on are
    # still pending, and go through now.
    mended = Path(registry) / "seg" / entry.version / "manifest.json"
    mended.write_text(dataclasses.replace(entry, preprocessing=manifest.preprocessing).to_json())
    again = annotate(spark, broken, ["segment", "embed"])
    assert [(c.task, c.annotated, c.good, c.errors, c.done_before, c.model_failures) for c in again.tasks] == [
        ("segment", 8, 8, 0, 1, 0), ("embed", 0, 0, 0, 9, 0),
    ]  # fmt: skip
    assert read_table(spark, broken, TASKS["segment"].table).where(F.col("error").isNull()).count() == 8


def test_a_registered_model_with_an_unusable_manifest_is_refused_before_any_work(spark, scene_lake: Config) -> None:
    registry = scene_lake.models.registry
    model, manifest = load_model(registry, "classifier")
    save_model(model, dataclasses.replace(manifest, name="few", version="", weights_sha256="", created="",
                                          classes=manifest.classes[:-1]), registry)  # fmt: skip
    few = dataclasses.replace(
        scene_lake, annotate=dataclasses.replace(scene_lake.annotate, models={
            **scene_lake.annotate.models, "classify": "few"}),
    )  # fmt: skip
    with pytest.raises(RegistryError, match=r"model few: the manifest lists 6 classes but the classifier's head has 7"):
        annotate(spark, few, ["classify"])
    assert read_table(spark, few, LABELS).count() == 0


def test_grey_and_tinted_images_are_coloured_colour_ones_left_out_and_every_image_reconstructed(
    spark, cfg: Config, tmp_path: Path
) -> None:
    folder = tmp_path / "archive"
    folder.mkdir()
    y, x = np.mgrid[0:48, 0:64]
    grey = Image.fromarray(((x * 3 + y * 2) % 256).astype(np.uint8), "L")
    grey.save(folder / "grey.png")
    ImageOps.colorize(grey, black=(40, 26, 13), white=(255, 240, 220)).save(folder / "sepia.jpg", quality=95)
    two_hues = np.zeros((30, 40, 3), np.uint8)
    two_hues[:, :20], two_hues[:, 20:] = (200, 30, 30), (30, 60, 200)
    Image.fromarray(two_hues).save(folder / "red-blue.png")
    Image.new("L", (1, 1), 90).save(folder / "pixel.png")
    Image.new("RGB", (30, 20)).save(folder / "black.png")
    (folder / "cut.png").write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    lake = dataclasses.replace(cfg, models=ModelsConfig(str(tmp_path / "models")))
    install_bundled(lake.models.registry, names=["colouriser", "autoencoder"])
    ingest(spark, lake, str(folder))

    # Similar-image search on the codes: embed names the autoencoder too, and its vectors are written once.
    models = {**lake.annotate.models, "embed": "autoencoder"}
    lake = dataclasses.replace(lake, annotate=dataclasses.replace(lake.annotate, models=models))
    first = annotate(spark, lake, ["colourise", "autoencode", "embed"])
    colourise, autoencode = first.tasks
    assert (colourise.annotated, colourise.good, colourise.errors, colourise.left_out) == (5, 4, 1, 1)
    assert dict(colourise.kinds) == {"grey": 3, "tinted": 1, "colour": 1}
    assert "left out 1 (colour: no row)" in first.summary() and "kinds: grey 3, tinted 1, colour 1" in first.summary()
    assert (autoencode.annotated, autoencode.good, autoencode.errors) == (6, 5, 1)

    uris = read_table(spark, lake, IMAGES).select("image_id", "uri", "width", "height")
    coloured = {Path(r.uri).name: r for r in read_table(spark, lake, COLOURISED).join(uris, "image_id").collect()}
    assert sorted(coloured) == ["black.png", "cut.png", "grey.png", "pixel.png", "sepia.jpg"]
    assert coloured["cut.png"].png is None and coloured["cut.png"].error.startswith("ingest error: ")
    assert {n: r.kind for n, r in coloured.items()} == {
        "black.png": "grey", "cut.png": None, "grey.png": "grey", "pixel.png": "grey", "sepia.jpg": "tinted",
    }  # fmt: skip
    for name in ("grey.png", "pixel.png", "black.png", "sepia.jpg"):
        row = coloured[name]
        out = Image.open(io.BytesIO(row.png))
        assert (out.mode, out.size) == ("RGB", (row.width, row.height)), name
    kept = rgb_to_lab(torch.tensor(np.asarray(Image.open(io.BytesIO(coloured["grey.png"].png)))).permute(2, 0, 1)[None]
                      / 255.0)[0, 0]  # fmt: skip
    given = rgb_to_lab(torch.tensor(np.asarray(grey.convert("RGB"))).permute(2, 0, 1)[None] / 255.0)[0, 0]
    assert (kept - given).abs().max() < 1.5  # the image's own lightness, to 8-bit rounding
    left = read_table(spark, lake, ANNOTATE_LEFT_OUT).join(uris, "image_id").collect()
    assert [(Path(r.uri).name, r.task, r.kind) for r in left] == [("red-blue.png", "colourise", "colour")]

    reconstructed = read_table(spark, lake, RECONSTRUCTIONS).join(uris, "image_id").collect()
    assert sorted(Path(r.uri).name for r in reconstructed) == sorted(p.name for p in folder.iterdir())
    for row in reconstructed:
        if row.error is None:
            box = row.worst_region
            assert 0 <= box.x0 < row.width and 0 <= box.y0 < row.height and box.w >= 1 and box.h >= 1
            assert row.worst_error >= row.error_per_pixel >= 0 and row.unusualness >= row.error_per_pixel
    codes = read_table(spark, lake, EMBEDDINGS).where(F.col("model") == "autoencoder").collect()
    assert len(codes) == 6 and all(abs(np.linalg.norm(r.vector) - 1) < 1e-4 for r in codes if r.error is None)

    again = annotate(spark, lake, ["colourise", "autoencode", "embed"])
    assert [(c.annotated, c.left_out, c.done_before) for c in again.tasks] == [(0, 0, 6), (0, 0, 6)]
    assert read_table(spark, lake, COLOURISED).count() == 5 and read_table(spark, lake, ANNOTATE_LEFT_OUT).count() == 1
