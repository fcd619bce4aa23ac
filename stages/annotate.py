"""The annotate stage: the registry's models over the lake's images (``jobs.annotate`` and the nightly job run it).

Each task (``lakelens.tasks``) runs its model (``annotate.models``) over the ``images`` that model version has not
seen yet, and appends one row per image to its table (labels, detections, segments, captions, embeddings, ...):
the outputs, or an ``error``; a task that leaves images of a kind out (colourise: colour images) records them in
``annotate_left_out`` instead, and a task with further tables (autoencode: its codes in ``embeddings``) writes each.
The tasks share one pass, a pandas UDF on the executors: each pending image is read and decoded once and goes
through every model that has not seen it. A re-run adds nothing; a new model version annotates every image again,
beside the old version's rows.
"""

from __future__ import annotations

import logging
import operator
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import reduce
from pathlib import Path
from typing import Any

from pyspark.sql import Column, DataFrame, Observation, SparkSession
from pyspark.sql import functions as F

from lakelens.config import ANNOTATE_TASKS, Config
from lakelens.lake import append_each, read_table, registry_root, staged
from lakelens.progress import stage_progress
from lakelens.pyworker import worker_task
from lakelens.row_errors import MODEL_ERROR_PATTERN
from lakelens.schemas import ANNOTATE_LEFT_OUT, IMAGES, TableSpec
from lakelens.spark import session_conf
from lakelens.tasks import TASKS
from models.pretrained import install_models, installable
from models.registry import Manifest, RegistryError, check_manifest, read_entry, read_manifest, versions
from udfs.factory import ModelUdfSpec, make_tasks_udf, tasks_udf_schema

log = logging.getLogger("lakelens.annotate")


class ModelFailedError(RuntimeError):
    """A task's model failed on every image it ran on."""


@dataclass(frozen=True)
class TaskCounts:
    """What one task of a run did. ``annotated == good + errors`` rows were written; ``model_failures`` images made
    the model fail and got no row (they are annotated again on the next run); ``left_out`` images are of a kind the
    task leaves out (``Task.leaves_out``: no row in its table); ``done_before + annotated + model_failures +
    left_out`` = all images. ``kinds``: (kind, images) of this run's, for a task that sorts images."""

    task: str
    model: str
    version: str
    done_before: int
    annotated: int
    good: int
    errors: int
    model_failures: int = 0
    left_out: int = 0
    kinds: tuple[tuple[str, int], ...] = ()

    def summary(self) -> str:
        failed = (
            f", model failures {self.model_failures} (no rows: annotated again on the next run)"
            if self.model_failures
            else ""
        )
        task = TASKS[self.task]
        left = f", left out {self.left_out} ({'/'.join(task.leaves_out)}: no row)" if task.leaves_out else ""
        kinds = f"; kinds: {', '.join(f'{k} {n}' for k, n in self.kinds)}" if self.kinds else ""
        tables = " + ".join(t.name for t in task.tables)
        return (
            f"{self.task}: {self.model} {self.version} -> {tables}: annotated {self.annotated} "
            f"(good {self.good} + errors {self.errors}), already done {self.done_before}{left}{failed}{kinds}"
        )


@dataclass(frozen=True)
class AnnotateCounts:
    """What a run of several tasks did: ``annotated`` images went through the pass, each task's counts apart."""

    images: int
    annotated: int
    tasks: tuple[TaskCounts, ...]
    seconds: float

    @property
    def rows(self) -> int:
        return sum(t.annotated for t in self.tasks)

    @property
    def errors(self) -> int:
        return sum(t.errors + t.model_failures for t in self.tasks)

    @property
    def models(self) -> str:
        return ",".join(f"{t.model}:{t.version}" for t in self.tasks)

    def summary(self) -> str:
        rate = self.annotated / self.seconds if self.seconds else 0.0
        head = (
            f"annotate: {self.annotated} of {self.images} images through {len(self.tasks)} models in one pass, "
            f"{self.rows} rows written, {self.seconds:.1f}s, {rate:.1f} images/s"
        )
        return "\n".join([head, *(f"  {t.summary()}" for t in self.tasks)])


def transform_pending_tasks(images: DataFrame, done: Mapping[str, DataFrame]) -> DataFrame:
    """Every distinct ``image_id`` of ``images`` (with its ``ingest_date``) with ``todo_<task>`` per task of ``done``
    (task -> ``image_id`` of the images its configured model version has annotated): whether the task still has
    to run on the image.

    One shuffle of all the ids, tagged by task, rather than a join per task.
    """
    tagged = images.select("image_id", "ingest_date", F.lit(None).cast("string").alias("task"))
    for task, ids in done.items():
        tagged = tagged.unionByName(
            ids.select("image_id", F.lit(None).cast("date").alias("ingest_date"), F.lit(task).alias("task"))
        )
    grouped = tagged.groupBy("image_id").agg(
        F.count_if(F.col("task").isNull()).alias("listed"),
        F.min("ingest_date").alias("ingest_date"),
        F.collect_set("task").alias("done"),
    )
    todo = [(~F.array_contains("done", task)).alias(f"todo_{task}") for task in done]
    return grouped.where(F.col("listed") > 0).select("image_id", "ingest_date", *todo)


def transform_pending_images(images: DataFrame, pending: DataFrame, since: date, broadcast: bool) -> DataFrame:
    """The ``images`` rows (image_id, bytes, error) of the ids in ``pending``, with ``pending``'s other columns,
    read from the ``ingest_date`` partitions from ``since`` on (the earliest of the pending images): a night's new
    images are in the newest partition, and the lake's older image bytes are not read. ``broadcast``: ``pending``
    is a night's few ids, joined where the bytes are read so that they are not shuffled."""
    recent = images.where(F.col("ingest_date") >= F.lit(since)).select("image_id", "bytes", "error")
    return recent.join(F.broadcast(pending) if broadcast else pending, "image_id")


def transform_task_rows(annotated: DataFrame, task: str, table: TableSpec, annotated_at: datetime) -> DataFrame:
    """One task's rows of the one-pass output (``tasks_udf_schema``) for ``table`` (one of the task's tables): the
    images it ran on, but those the model failed on (:func:`model_failed`) and those it leaves out
    (:func:`left_out`), in ``table``'s columns, stamped with ``annotated_at``."""
    fields = [name for name in table.columns if name not in ("image_id", "annotated_at")]
    return annotated.where(F.col(f"{task}__model").isNotNull() & ~model_failed(task) & ~left_out(task)).select(
        "image_id",
        *[F.col(f"{task}__{name}").alias(name) for name in fields],
        F.lit(annotated_at).cast("timestamp").alias("annotated_at"),
    )


def transform_left_out_rows(annotated: DataFrame, task: str, annotated_at: datetime) -> DataFrame:
    """The ``annotate_left_out`` rows of a task's images of a kind it leaves out."""
    return annotated.where(left_out(task)).select(
        "image_id",
        F.lit(task).alias("task"),
        F.col(f"{task}__kind").alias("kind"),
        F.lit(annotated_at).cast("timestamp").alias("annotated_at"),
        F.col(f"{task}__model").alias("model"),
        F.col(f"{task}__model_version").alias("model_version"),
    )


def left_out(task: str) -> Column:
    """Whether the task's row of the one-pass output is an image of a kind the task leaves out (never an error)."""
    kinds = TASKS[task].leaves_out
    if not kinds:
        return F.lit(False)
    return F.coalesce(F.col(f"{task}__error").isNull() & F.col(f"{task}__kind").isin(*kinds), F.lit(False))


def model_failed(task: str) -> Column:
    """Whether the task's row of the one-pass output is a failure of the model rather than of the image."""
    return F.coalesce(F.col(f"{task}__error").rlike(MODEL_ERROR_PATTERN), F.lit(False))


def configured_manifest(cfg: Config, task: str) -> Manifest:
    """The registry manifest of the model ``annotate.models`` names for ``task`` (its latest version if none given),
    without reading its weights."""
    name, _, version = cfg.annotate.models[task].partition(":")
    return read_manifest(registry_root(cfg), name, version or None)


def configured_entry(cfg: Config, task: str) -> tuple[Manifest, bytes]:
    """The manifest and weights of the model ``annotate.models`` names for ``task``, checked: a model that is
    missing, or whose manifest it cannot work with, is refused with what to do about it."""
    manifest, weights = _read_configured(cfg, task, read_entry)
    check_manifest(manifest)
    return manifest, weights


def checked_manifest(cfg: Config, task: str) -> Manifest:
    """The manifest of ``task``'s configured model, refused as :func:`configured_entry` refuses it, without reading
    its weights (what a job checks before it starts its work)."""
    manifest = _read_configured(cfg, task, read_manifest)
    check_manifest(manifest)
    return manifest


def install_missing_models(cfg: Config, tasks: Sequence[str]) -> list[Manifest]:
    """Install into the registry each model ``annotate.models`` names for ``tasks`` that it lacks and that comes
    with lakelens (``models.pretrained.installable``: the scene models and the pretrained photo models, named
    without a version), so that a first run on a new lake needs no ``jobs.models install``; returns the entries
    installed. Any other missing model is left to :func:`checked_manifest`, which says what to do about it.
    """
    root = registry_root(cfg)
    named = {cfg.annotate.models[t] for t in tasks}
    missing = sorted(n for n in named & set(installable()) if not versions(root, n))
    installed = install_models(root, missing) if missing else []
    for entry in installed:
        log.info("installed %s %s (%s) into the model registry %s", entry.name, entry.version, entry.architecture, root)
    return installed


def _read_configured(cfg: Config, task: str, read: Callable[[Path, str, str | None], Any]) -> Any:
    name, _, version = cfg.annotate.models[task].partition(":")
    try:
        return read(registry_root(cfg), name, version or None)
    except RegistryError as exc:
        lake = "" if cfg.lake.root == "./lake" else f" --lake {cfg.lake.root}"
        remedy = (
            f"install the bundled defaults (python -m jobs.models install {name}{lake})"
            if name in installable() and not version
            else f"train one (python -m jobs.train --name {name} ...) or register one (jobs.train --register)"
        )
        raise RegistryError(
            f"{task}: {exc}. To fix: {remedy}; or name another with --set annotate.models.{task}=NAME "
            f"(python -m jobs.models list{lake} shows them)"
        ) from exc


def model_spec(cfg: Config, task: str, spark: SparkSession) -> ModelUdfSpec:
    """The UDF spec of ``task``: its configured model read from the registry, the weights broadcast once."""
    manifest, weights = configured_entry(cfg, task)
    return ModelUdfSpec(
        task,
        manifest,
        spark.sparkContext.broadcast(weights),
        batch_size=cfg.annotate.batch_size,
        decode_threads=cfg.annotate.decode_threads,
        max_pixels=cfg.ingest.max_pixels,
        options=dict(cfg.annotate.options[task]),
        precision=cfg.annotate.precision,
    )


def annotate(
    spark: SparkSession, cfg: Config, tasks: Sequence[str], embeddings_written: Callable[[], None] = lambda: None
) -> AnnotateCounts:
    """Run every task in ``tasks`` over the images its model version has not seen, in one pass: each pending image
    is read and decoded once and goes through the tasks it lacks; each task's rows are appended to its table.

    The pass is staged (written once to the lake's staging folder) while the tables are written: a cache would be
    dropped by the first append, since the pass reads those tables to find its images, and the models run again.
    ``embeddings_written()`` is called once new embeddings are in, before the other tables are written.
    """
    started = time.monotonic()
    todo = [t for t in ANNOTATE_TASKS if t in tasks]
    specs = {t: model_spec(cfg, t, spark) for t in todo}
    if _embeds_the_codes(specs):
        todo.remove("embed")  # the autoencode task writes those vectors once; embed reads them as done
        log.info("annotate: embed runs autoencode's model %s: its vectors are the autoencode task's codes",
                 specs.pop("embed").manifest.name)  # fmt: skip
    images = read_table(spark, cfg, IMAGES)
    done = {t: _done_ids(spark, cfg, t, specs[t].manifest) for t in todo}
    flags = transform_pending_tasks(images, done).cache()
    try:
        counted = flags.agg(
            F.count("*").alias("images"),
            F.count_if(_any_todo(todo)).alias("pending"),
            F.min(F.when(_any_todo(todo), F.col("ingest_date"))).alias("since"),
            *[F.count_if(f"todo_{t}").alias(t) for t in todo],
        ).first()
        n_images, n_pending = counted["images"], counted["pending"]
        if n_pending == 0:
            counts = [_counts(specs[t], n_images, 0, 0) for t in todo]
            return AnnotateCounts(n_images, 0, tuple(counts), time.monotonic() - started)
        pending_ids = flags.where(_any_todo(todo)).drop("ingest_date")
        # A nightly increment is small: broadcast its ids rather than shuffle every image's bytes to find them.
        small = n_pending <= cfg.ingest.broadcast_rows
        pending = transform_pending_images(images, pending_ids, counted["since"], small)
        cores = spark.sparkContext.defaultParallelism
        if pending.rdd.getNumPartitions() < cores:
            pending = pending.repartition(cores)
        annotated_at = datetime.now(UTC).replace(microsecond=0, tzinfo=None)
        log.info("annotate: %d images through %s", n_pending, ", ".join(f"{t} ({counted[t]})" for t in todo))
        udf = make_tasks_udf([specs[t] for t in todo])
        # What the pass made and what each append wrote are counted by the jobs that write them (observations),
        # not by reading the rows back.
        made = Observation()
        kinds = [(t, k) for t in todo for k in TASKS[t].kinds]
        passed = pending.mapInPandas(worker_task(udf), tasks_udf_schema(todo)).observe(
            made,
            F.count("*").alias("rows"),
            *[F.count(f"{t}__model").alias(t) for t in todo],
            *[F.count_if(model_failed(t)).alias(f"{t}_failures") for t in todo],
            *[F.min(F.when(model_failed(t), F.col(f"{t}__error"))).alias(f"{t}_failure") for t in todo],
            *[F.count_if(left_out(t)).alias(f"{t}_left_out") for t in todo],
            *[F.count_if(F.col(f"{t}__kind") == k).alias(f"{t}_kind_{k}") for t, k in kinds],
        )
        appended = {t: Observation() for t in todo if counted[t]}
        with (
            session_conf(spark, "spark.sql.execution.arrow.maxRecordsPerBatch", str(cfg.annotate.arrow_batch_rows)),
            stage_progress(spark, "annotate", n_pending),
            staged(passed, cfg, "annotate") as annotated,
        ):
            made_rows = made.get
            if made_rows["rows"] != n_pending or any(made_rows[t] != counted[t] for t in todo):
                raise RuntimeError(f"annotate: {n_pending} images went in but the pass gave {made_rows}")
            writes = {
                t: (
                    transform_task_rows(annotated, t, TASKS[t].table, annotated_at).observe(
                        seen, F.count("*").alias("rows"), F.count("error").alias("errors")
                    ),
                    TASKS[t].table,
                )
                for t, seen in appended.items()
            }
            further = [
                (transform_task_rows(annotated, t, table, annotated_at), table)
                for t in appended
                for table in TASKS[t].also
            ] + [
                (transform_left_out_rows(annotated, t, annotated_at), ANNOTATE_LEFT_OUT)
                for t in appended
                if made_rows[f"{t}_left_out"]
            ]
            # Embeddings first: the similar-image index reads them, and can start while the others are written.
            if "embed" in writes:
                append_each([writes.pop("embed")], cfg)
                embeddings_written()
            append_each([*writes.values(), *further], cfg)
    finally:
        flags.unpersist()
        for spec in specs.values():
            spec.weights.unpersist()
    seen = {t: appended[t].get if t in appended else {"rows": 0, "errors": 0} for t in todo}  # one read each
    failures = {t: made_rows[f"{t}_failures"] for t in todo}
    written = {t: (seen[t]["rows"], seen[t]["errors"], failures[t], made_rows[f"{t}_left_out"]) for t in todo}
    for t in todo:
        if written[t][0] + failures[t] + written[t][3] != counted[t]:
            raise RuntimeError(f"{t}: {counted[t]} images went in but {written[t][0]} rows were written")
    for t in todo:
        rows, errors, failed, _ = written[t]
        if failed and rows == errors:  # not one image went through: the model is broken, not the images
            m = specs[t].manifest
            raise ModelFailedError(
                f"{t}: model {m.name} {m.version} failed on every image it ran on ({failed}): "
                f"{made_rows[f'{t}_failure']}. No rows were written for them; fix or replace the model "
                f"(--set annotate.models.{t}=NAME) and run again"
            )
    counts = [
        _counts(specs[t], n_images, *written[t], tuple((k, made_rows[f"{t}_kind_{k}"]) for k in TASKS[t].kinds))
        for t in todo
    ]
    return AnnotateCounts(n_images, n_pending, tuple(counts), time.monotonic() - started)


def _embeds_the_codes(specs: Mapping[str, ModelUdfSpec]) -> bool:
    """Whether embed and autoencode run the same model version (both would write its codes to embeddings)."""
    if "embed" not in specs or "autoencode" not in specs:
        return False
    embed, codes = specs["embed"].manifest, specs["autoencode"].manifest
    return (embed.name, embed.version) == (codes.name, codes.version)


def _any_todo(tasks: Sequence[str]) -> Column:
    return reduce(operator.or_, [F.col(f"todo_{t}") for t in tasks])


def _done_ids(spark: SparkSession, cfg: Config, task: str, manifest: Manifest) -> DataFrame:
    """The images the task's model version has seen: its rows, and those it left out."""
    version = (F.col("model") == manifest.name) & (F.col("model_version") == manifest.version)
    rows = read_table(spark, cfg, TASKS[task].table).where(version).select("image_id")
    if not TASKS[task].leaves_out:
        return rows
    left = read_table(spark, cfg, ANNOTATE_LEFT_OUT).where(version & (F.col("task") == task)).select("image_id")
    return rows.unionByName(left)


def _counts(
    spec: ModelUdfSpec, n_images: int, rows: int, errors: int, failures: int = 0, left: int = 0,
    kinds: tuple[tuple[str, int], ...] = (),
) -> TaskCounts:  # fmt: skip
    m = spec.manifest
    done = n_images - rows - failures - left
    return TaskCounts(spec.task, m.name, m.version, done, rows, rows - errors, errors, failures, left, kinds)
