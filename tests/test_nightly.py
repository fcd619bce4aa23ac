"""The nightly job: stages in one application, the runs table, resuming a failed run, and idempotent re-runs."""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pyspark.sql import DataFrame

from lakelens.config import Config, ModelsConfig, NightlyConfig, load_config
from lakelens.lake import read_table
from lakelens.scenes import generate_scenes
from lakelens.schemas import (
    ANNOTATE_LEFT_OUT,
    COLOURISED,
    DUP_GROUPS,
    EMBEDDINGS,
    IMAGES,
    LABELS,
    NEAR_DUP_PAIRS,
    RECONSTRUCTIONS,
    RUNS,
    SIGNATURES,
    SIMILAR,
)
from models.registry import RegistryError, install_bundled, model_names
from stages import nightly as nightly_stage
from stages.nightly import nightly, run_in_order, stages

TABLES = (IMAGES, LABELS, EMBEDDINGS, SIGNATURES, NEAR_DUP_PAIRS, SIMILAR)


def rows(df: DataFrame) -> list[tuple]:
    return sorted(tuple(r) for r in df.collect())


def snapshot(spark, cfg: Config) -> dict[str, list[tuple]]:
    return {spec.name: rows(read_table(spark, cfg, spec)) for spec in TABLES}


def run_rows(spark, cfg: Config, run_id: str) -> list[tuple]:
    runs = read_table(spark, cfg, RUNS).where(f"run_id = '{run_id}'").orderBy("ended_at")
    return [(r.stage, r.status, r.rows_in, r.rows_out, r.errors) for r in runs.collect()]


@pytest.fixture
def night(cfg: Config, tmp_path: Path) -> tuple[Config, Path]:
    """A lake with the bundled models, two annotate tasks, stages one after another (so that a failed stage is the
    last one a run records), and a source of 12 scenes and one corrupt file."""
    lake = dataclasses.replace(
        cfg,
        models=ModelsConfig(str(tmp_path / "models")),
        annotate=dataclasses.replace(cfg.annotate, tasks=("classify", "embed")),
        nightly=NightlyConfig(parallel_stages=1),
    )
    install_bundled(lake.models.registry)
    generate_scenes(tmp_path / "scenes", n=12, seed=8, workers=1, dup_fraction=0.3)
    source = tmp_path / "scenes" / "images"
    (source / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    return lake, source


def test_a_failed_run_resumes_at_its_failed_stage_and_a_rerun_changes_nothing(
    spark, night: tuple[Config, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg, source = night
    real = nightly_stage.annotate

    def fails_after_classify(spark, cfg, tasks, embeddings_written=lambda: None):
        real(spark, cfg, ["classify"])  # one table written, then the device goes
        raise RuntimeError("CUDA error: device lost\nmore detail")

    monkeypatch.setattr(nightly_stage, "annotate", fails_after_classify)
    with pytest.raises(RuntimeError, match="device lost"):
        nightly(spark, cfg, str(source))
    runs = read_table(spark, cfg, RUNS)
    (failed_run,) = [r.run_id for r in runs.select("run_id").distinct().collect()]
    assert run_rows(spark, cfg, failed_run) == [
        ("ingest", "done", 13, 13, 1),
        ("annotate", "failed", None, None, None),
    ]
    failure = runs.where("status = 'failed'").first()
    assert failure.message == "RuntimeError: CUDA error: device lost"

    monkeypatch.undo()
    run_id, ran = nightly(spark, cfg, str(source))
    assert run_id == failed_run
    assert ran == ["annotate", "index:near_dup", "index:similar"]
    done = run_rows(spark, cfg, run_id)
    assert [r[:2] for r in done[2:]] == [
        ("annotate", "done"), ("index:near_dup", "done"), ("index:similar", "done"), ("nightly", "done"),
    ]  # fmt: skip
    assert done[2][2:] == (13, 13, 1)  # only the embeddings were left to make
    after = snapshot(spark, cfg)
    listed = len({r[0] for r in after["similar"]})
    assert done[4][2:] == (12, listed, 1)  # 12 embedded images indexed, their lists written; the corrupt one skipped
    assert [len(after[spec.name]) for spec in (IMAGES, LABELS, EMBEDDINGS, SIGNATURES)] == [13, 13, 13, 13]
    assert after["near_dup_pairs"] and after["similar"]
    stage_rows = read_table(spark, cfg, RUNS).where(f"run_id = '{run_id}' AND stage = 'annotate'").first()
    assert stage_rows.models == "classifier:v1,embedder:v2" and stage_rows.config_hash == cfg.digest()

    again, ran = nightly(spark, cfg, str(source))
    assert again != run_id and ran == stages(cfg)
    assert run_rows(spark, cfg, again) == [
        ("ingest", "done", 13, 0, 0),
        ("annotate", "done", 0, 0, 0),
        ("index:near_dup", "done", 0, 0, 0),
        ("index:similar", "done", 0, 0, 1),
        ("nightly", "done", None, None, None),
    ]
    assert snapshot(spark, cfg) == after
    check_views(spark, cfg)


def check_views(spark, cfg: Config) -> None:
    """The views agree with the tables they summarise."""
    db = cfg.lake.database
    labels = {r.image_id: (r.label, r.score) for r in read_table(spark, cfg, LABELS).collect()}
    groups = {r.image_id: (r.group_id, r.group_size) for r in read_table(spark, cfg, DUP_GROUPS).collect()}
    n_similar = Counter(r.image_id for r in read_table(spark, cfg, SIMILAR).collect())
    uris = {r.image_id: r.uri for r in read_table(spark, cfg, IMAGES).collect()}
    summary = spark.table(f"{db}.image_summary").select("image_id", "top_label", "dup_group", "dup_group_size",
                                                        "n_similar")  # fmt: skip
    assert rows(summary) == sorted((i, labels[i][0], *groups.get(i, (None, 1)), n_similar.get(i, 0)) for i in uris)
    assert any(size > 1 for size in map(lambda g: g[1], groups.values()))

    ranked = rows(spark.table(f"{db}.top_images_by_label").select("label", "rank", "image_id", "uri"))
    by_label: dict[str, list[tuple[float, str]]] = {}
    for image_id, (label, score) in labels.items():
        if label is not None:
            by_label.setdefault(label, []).append((-score, image_id))
    assert ranked == sorted(
        (label, rank, i, uris[i]) for label, scored in by_label.items()
        for rank, (_, i) in enumerate(sorted(scored)[:10], start=1)
    )  # fmt: skip


def test_colourise_and_autoencode_run_each_night_on_the_new_images_only(spark, cfg: Config, tmp_path: Path) -> None:
    lake = dataclasses.replace(
        cfg,
        models=ModelsConfig(str(tmp_path / "models")),
        annotate=dataclasses.replace(cfg.annotate, tasks=("colourise", "autoencode")),
        nightly=NightlyConfig(parallel_stages=1),
    )
    source = tmp_path / "archive"
    source.mkdir()
    y, x = np.mgrid[0:40, 0:60]
    Image.fromarray(((x * 4 + y) % 256).astype(np.uint8), "L").save(source / "scan1.png")
    Image.fromarray(((x + y * 5) % 256).astype(np.uint8), "L").convert("RGB").save(source / "scan2.jpg", quality=95)
    two_hues = np.zeros((40, 60, 3), np.uint8)
    two_hues[:, :30], two_hues[:, 30:] = (200, 40, 40), (40, 60, 210)
    Image.fromarray(two_hues).save(source / "photo.png")

    first, _ = nightly(spark, lake, str(source))  # the models come with lakelens: installed on the way
    annotated = read_table(spark, lake, RUNS).where(f"run_id = '{first}' AND stage = 'annotate'").first()
    assert (annotated.rows_in, annotated.rows_out) == (3, 2 + 3)  # 2 colourised rows, 3 reconstructions
    assert "left out 1 (colour: no row); kinds: grey 2, tinted 0, colour 1" in annotated.message

    Image.fromarray(((x * 2 + y * 3) % 256).astype(np.uint8), "L").save(source / "scan3.png")
    second, _ = nightly(spark, lake, str(source))
    annotated = read_table(spark, lake, RUNS).where(f"run_id = '{second}' AND stage = 'annotate'").first()
    assert (annotated.rows_in, annotated.rows_out) == (1, 2)  # the new scan only, in both tables
    assert "kinds: grey 1, tinted 0, colour 0" in annotated.message
    counts = [read_table(spark, lake, t).count() for t in (COLOURISED, RECONSTRUCTIONS, ANNOTATE_LEFT_OUT)]
    assert counts == [3, 4, 1]
    assert read_table(spark, lake, EMBEDDINGS).where("model = 'autoencoder'").count() == 4


def test_stages_follow_the_configured_tasks() -> None:
    two_tasks = load_config(overrides=["annotate.tasks=[classify, caption]"])
    assert stages(two_tasks) == ["ingest", "annotate", "index:near_dup"]
    assert stages(load_config()) == ["ingest", "annotate", "index:near_dup", "index:similar"]
    searched = ["annotate.tasks=[embed, search]"]
    assert stages(load_config(overrides=searched)) == ["ingest", "annotate", "index:near_dup", "index:similar"]
    assert stages(load_config(overrides=[*searched, "index.search.method=lsh"])) == [
        "ingest", "annotate", "index:near_dup", "index:similar", "index:search"
    ]  # fmt: skip


STAGES = ["ingest", "annotate", "index:near_dup", "index:similar"]


class Stages:
    """Stand-in stages that log when they start and end; ``hold`` makes annotate wait (up to 20 s) until the
    near-duplicate stage has started, ``fail`` makes annotate raise once it has."""

    def __init__(self, hold: bool = False, fail: bool = False) -> None:
        self.log: list[str] = []
        self.near_dup_started = threading.Event()
        self.hold, self.fail = hold, fail

    def __call__(self, stage: str, ready: Callable[[], None]) -> None:
        self.log.append(f"start {stage}")
        if stage == "index:near_dup":
            self.near_dup_started.set()
        if stage == "annotate" and (self.hold or self.fail):
            if not self.near_dup_started.wait(20):
                raise AssertionError("annotate and the near-duplicate index did not run side by side")
            if self.fail:
                raise RuntimeError("device lost")
        self.log.append(f"end {stage}")
        ready()


def test_stages_run_side_by_side_once_the_stages_they_need_are_done(spark) -> None:
    run = Stages(hold=True)
    assert run_in_order(spark, STAGES, frozenset(), run, parallel=2) == STAGES
    assert run.log.index("end ingest") < min(run.log.index("start annotate"), run.log.index("start index:near_dup"))
    assert run.log.index("end annotate") < run.log.index("start index:similar")

    one_by_one = Stages()
    assert run_in_order(spark, STAGES, frozenset(), one_by_one, parallel=1) == STAGES
    assert one_by_one.log == [f"{event} {stage}" for stage in STAGES for event in ("start", "end")]

    resumed = Stages()
    assert run_in_order(spark, STAGES, frozenset({"ingest", "index:near_dup"}), resumed, parallel=2) == [
        "annotate", "index:similar",
    ]  # fmt: skip


def test_a_failed_stage_starts_nothing_after_it_and_the_stage_beside_it_finishes(spark) -> None:
    run = Stages(fail=True)
    with pytest.raises(RuntimeError, match="device lost"):
        run_in_order(spark, STAGES, frozenset(), run, parallel=2)
    assert "end index:near_dup" in run.log
    assert "start index:similar" not in run.log and "end annotate" not in run.log


def test_the_stages_that_need_a_stage_start_while_it_writes_its_bookkeeping(spark) -> None:
    """Once ingest calls ready() its tables are complete: both stages that need them start while ingest is still
    in its bookkeeping (here: waiting until they have started; ``parallel`` does not count it), and a failure
    there is still raised."""
    log: list[str] = []
    three = threading.Barrier(3, timeout=20)  # ingest's bookkeeping, annotate and the near-duplicate index

    def run(stage: str, ready: Callable[[], None]) -> None:
        log.append(f"start {stage}")
        if stage == "ingest":
            ready()
            three.wait()
            raise RuntimeError("runs row not written")
        if stage != "index:similar":
            three.wait()
        log.append(f"end {stage}")
        ready()

    with pytest.raises(RuntimeError, match="runs row not written"):
        run_in_order(spark, STAGES, frozenset(), run, parallel=2)
    assert log[0] == "start ingest"
    assert {"start annotate", "end annotate", "start index:near_dup", "end index:near_dup"} <= set(log)


def test_all_ready_comes_once_every_stage_is_ready_beside_the_last_bookkeeping(spark) -> None:
    log: list[str] = []
    called = threading.Event()

    def run(stage: str, ready: Callable[[], None]) -> None:
        log.append(f"end {stage}")
        ready()
        if stage == "index:similar" and not called.wait(20):  # its bookkeeping waits for all_ready
            raise AssertionError("all_ready did not come while the last bookkeeping ran")

    def all_ready() -> None:
        log.append("all ready")
        called.set()

    assert run_in_order(spark, STAGES, frozenset(), run, parallel=2, all_ready=all_ready) == STAGES
    assert log[-1] == "all ready" and sorted(log[:-1]) == sorted(f"end {stage}" for stage in STAGES)

    failed: list[str] = []
    with pytest.raises(RuntimeError, match="device lost"):
        run_in_order(spark, STAGES, frozenset(), Stages(fail=True), parallel=2, all_ready=lambda: failed.append("x"))
    assert failed == []

    resumed: list[str] = []
    assert run_in_order(spark, STAGES, frozenset(STAGES), Stages(), 2, lambda: resumed.append("x")) == []
    assert resumed == ["x"]


def test_a_missing_model_is_installed_where_it_comes_with_lakelens_and_refused_before_ingest_otherwise(
    spark, night: tuple[Config, Path], tmp_path: Path
) -> None:
    cfg, source = night
    mine = dataclasses.replace(cfg.annotate, models={**cfg.annotate.models, "classify": "my-classifier"})
    bare = dataclasses.replace(cfg, models=ModelsConfig(str(tmp_path / "empty")), annotate=mine)
    with pytest.raises(RegistryError, match=r"classify: no model named 'my-classifier' .* To fix: train one"):
        nightly(spark, bare, str(source))
    assert model_names(tmp_path / "empty") == ["embedder"]  # the embed task's scene model, installed
    assert read_table(spark, bare, IMAGES).count() == 0 and read_table(spark, bare, RUNS).count() == 0
