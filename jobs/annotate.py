"""Annotate images with the registry's models: ``python -m jobs.annotate [--tasks classify,detect,...]``.

Each task (classify, detect, segment, caption, embed) runs its model (``annotate.models``) over the ``images``
that have no row from that model version yet, in a pandas UDF on the executors, and appends one row per image to
its table (labels, detections, segments, captions, embeddings): the outputs, or an ``error``. A re-run adds
nothing; a new model version annotates every image again, beside the old version's rows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakelens.cli import config_from_args, job_parser, run_job
from lakelens.config import ANNOTATE_TASKS, AnnotateConfig, Config
from lakelens.lake import append, read_table, registry_root
from lakelens.progress import stage_progress
from lakelens.schemas import CAPTIONS, DETECTIONS, EMBEDDINGS, IMAGES, LABELS, SEGMENTS, TableSpec
from lakelens.spark import build_session, session_conf
from models.registry import Manifest, RegistryError, read_entry, read_manifest
from udfs.factory import ModelUdfSpec, make_model_udf, udf_schema

log = logging.getLogger("lakelens.annotate")

TASK_TABLES: dict[str, TableSpec] = {
    "classify": LABELS,
    "detect": DETECTIONS,
    "segment": SEGMENTS,
    "caption": CAPTIONS,
    "embed": EMBEDDINGS,
}


@dataclass(frozen=True)
class TaskCounts:
    """What one task of a run did. ``annotated == good + errors``; ``done_before + annotated`` = all images."""

    task: str
    model: str
    version: str
    done_before: int
    annotated: int
    good: int
    errors: int
    seconds: float

    def summary(self) -> str:
        rate = self.annotated / self.seconds if self.seconds else 0.0
        return (
            f"{self.task}: {self.model} {self.version} -> {TASK_TABLES[self.task].name}: annotated {self.annotated} "
            f"(good {self.good} + errors {self.errors}), already done {self.done_before}, {self.seconds:.1f}s, "
            f"{rate:.1f} images/s"
        )


def transform_pending_ids(image_ids: DataFrame, annotations: DataFrame, model: str, version: str) -> DataFrame:
    """``image_id`` of the images without a row from ``model`` ``version`` in its annotation table."""
    done = annotations.where((F.col("model") == model) & (F.col("model_version") == version)).select("image_id")
    return image_ids.select("image_id").distinct().join(done, "image_id", "left_anti")


def transform_annotations(
    pending: DataFrame, spec: ModelUdfSpec, table: TableSpec, annotated_at: datetime
) -> DataFrame:
    """The model's rows for ``pending`` (image_id, bytes, error): one per image, stamped with ``annotated_at``."""
    rows = pending.select("image_id", "bytes", "error").mapInPandas(make_model_udf(spec), udf_schema(table))
    return rows.withColumn("annotated_at", F.lit(annotated_at).cast("timestamp"))


def task_options(task: str, settings: AnnotateConfig) -> dict[str, Any]:
    """The predictor settings of ``task`` from the config."""
    return {
        "classify": {"top_k": settings.top_k, "threshold": settings.label_threshold},
        "detect": {"min_score": settings.min_score},
        "caption": {"beam_size": settings.beam_size},
    }.get(task, {})


def configured_manifest(cfg: Config, task: str) -> Manifest:
    """The registry manifest of the model ``annotate.models`` names for ``task`` (its latest version if none given),
    without reading its weights."""
    name, _, version = getattr(cfg.annotate.models, task).partition(":")
    return read_manifest(registry_root(cfg), name, version or None)


def model_spec(cfg: Config, task: str, spark: SparkSession) -> ModelUdfSpec:
    """The UDF spec of ``task``: its configured model read from the registry, the weights broadcast once."""
    ref = getattr(cfg.annotate.models, task)
    name, _, version = ref.partition(":")
    registry = registry_root(cfg)
    try:
        manifest, weights = read_entry(registry, name, version or None)
    except RegistryError as exc:
        raise RegistryError(
            f"{task}: {exc}. Train one (python -m jobs.train --name {name} ...), install the bundled defaults "
            f"(python -m jobs.demo), or name another with --set annotate.models.{task}=NAME"
        ) from exc
    return ModelUdfSpec(
        task,
        manifest,
        spark.sparkContext.broadcast(weights),
        batch_size=cfg.annotate.batch_size,
        decode_threads=cfg.annotate.decode_threads,
        max_pixels=cfg.ingest.max_pixels,
        options=task_options(task, cfg.annotate),
    )


def annotate_task(spark: SparkSession, cfg: Config, task: str) -> TaskCounts:
    """Run one task over the images its model version has not seen; append and count its rows."""
    started = time.monotonic()
    table = TASK_TABLES[task]
    spec = model_spec(cfg, task, spark)
    name, version = spec.manifest.name, spec.manifest.version
    images = read_table(spark, cfg, IMAGES)
    pending_ids = transform_pending_ids(images, read_table(spark, cfg, table), name, version).cache()
    try:
        n_pending = pending_ids.count()
        n_images = images.select("image_id").distinct().count()
        if n_pending == 0:
            return TaskCounts(task, name, version, n_images, 0, 0, 0, time.monotonic() - started)
        # A nightly increment is small: broadcast its ids rather than shuffle every image's bytes to find them.
        small = n_pending <= cfg.ingest.broadcast_rows
        pending = images.join(F.broadcast(pending_ids) if small else pending_ids, "image_id", "left_semi")
        cores = spark.sparkContext.defaultParallelism
        if pending.rdd.getNumPartitions() < cores:
            pending = pending.repartition(cores)
        annotated_at = datetime.now(UTC).replace(microsecond=0, tzinfo=None)
        log.info("%s: %s %s on %d images", task, name, version, n_pending)
        with (
            session_conf(spark, "spark.sql.execution.arrow.maxRecordsPerBatch", str(cfg.annotate.arrow_batch_rows)),
            stage_progress(spark, task, n_pending),
        ):
            append(transform_annotations(pending, spec, table, annotated_at), cfg, table)
    finally:
        pending_ids.unpersist()
        spec.weights.unpersist()
    written = (
        read_table(spark, cfg, table)
        .where((F.col("model") == name) & (F.col("model_version") == version) & (F.col("annotated_at") == annotated_at))
        .agg(F.count("*").alias("rows"), F.count("error").alias("errors"))
        .first()
    )
    if written["rows"] != n_pending:
        raise RuntimeError(f"{task}: {n_pending} images went in but {written['rows']} rows were written")
    return TaskCounts(
        task,
        name,
        version,
        n_images - n_pending,
        written["rows"],
        written["rows"] - written["errors"],
        written["errors"],
        time.monotonic() - started,
    )


def annotate(spark: SparkSession, cfg: Config, tasks: Sequence[str]) -> list[TaskCounts]:
    """Every task in ``tasks`` (in the order of ``ANNOTATE_TASKS``), one after the other."""
    return [annotate_task(spark, cfg, task) for task in ANNOTATE_TASKS if task in tasks]


def main(argv: Sequence[str] | None = None) -> int:
    parser = job_parser("jobs.annotate", __doc__.splitlines()[0])
    parser.add_argument(
        "--tasks", help=f"comma-separated, of {','.join(ANNOTATE_TASKS)} (default: annotate.tasks, all of them)"
    )
    args = parser.parse_args(argv)
    if args.tasks:
        args.overrides.append(f"annotate.tasks=[{args.tasks}]")
    cfg = config_from_args(args)
    spark = build_session(cfg)
    for counts in annotate(spark, cfg, cfg.annotate.tasks):
        print(counts.summary())
    return 0


if __name__ == "__main__":
    run_job(main)
