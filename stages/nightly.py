"""The nightly refresh in one Spark application, ingest, annotate, index, and the scheduler of its stages
(``jobs.nightly`` and the demo run it).

The source is what ``jobs.ingest`` takes: a folder of images, a list of paths, or a Parquet table. Every stage is
incremental (only new images are read, annotated and indexed) and records a row in the ``runs`` table. A stage
starts once the stages whose tables it reads are done, so annotate and the near-duplicate index run side by side
(``nightly.parallel_stages``). Started again after a failure, the job resumes that run at the stages not done; a
finished run is followed by a new one, which finds nothing new and changes no table.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.util import inheritable_thread_target

from lakelens.config import Config
from lakelens.files import normalise_uri
from lakelens.lake import append, read_table
from lakelens.lake_settings import remember_annotate
from lakelens.schemas import RUNS
from lakelens.sources import Source, open_source
from lakelens.spark import local_frame
from lakelens.views import ViewSources, create_views
from stages.annotate import annotate, checked_manifest, configured_manifest, install_missing_models
from stages.index import (
    buckets_for_search,
    index_near_duplicates,
    index_search,
    index_similar,
    near_dup_params,
    similar_params,
)
from stages.ingest import ingest

log = logging.getLogger("lakelens.nightly")
WHOLE_RUN = "nightly"
# The stages whose tables each stage reads: it starts once they are complete (ingest's images and annotate's
# embeddings are, before those stages end: run_stage).
NEEDS = {"ingest": (), "annotate": ("ingest",), "index:near_dup": ("ingest",), "index:similar": ("annotate",),
         "index:search": ("annotate",)}  # fmt: skip


@dataclass(frozen=True)
class StageResult:
    """What a stage did, as the runs table records it."""

    rows_in: int
    rows_out: int
    errors: int
    models: str
    summary: str


@dataclass(frozen=True)
class Resume:
    """The run to carry on: its id and the stages it already finished."""

    run_id: str
    done: frozenset[str]


def stages(cfg: Config) -> list[str]:
    """The stages of a run in order: ingest, annotate (every configured task in one pass), then the index (its
    similar-image half only where embeddings are made; the search buckets only where the search task runs with
    ``index.search.method: lsh``)."""
    similar = ["index:similar"] if "embed" in cfg.annotate.tasks else []
    search = ["index:search"] if buckets_for_search(cfg) else []
    return ["ingest", "annotate", "index:near_dup", *similar, *search]


def transform_resume(runs: DataFrame, source: str, config_hash: str) -> Resume | None:
    """The latest run of ``source`` under this config, if it did not finish: a failed or killed run resumes.

    The source's rows (a few a night) are read in one job and sorted out here."""
    mine = runs.where((F.col("source") == source) & (F.col("config_hash") == config_hash))
    rows = mine.select("run_id", "started_at", "stage", "status").collect()
    if not rows:
        return None
    began: dict[str, datetime] = {}
    for r in rows:
        began[r["run_id"]] = min(began.get(r["run_id"], r["started_at"]), r["started_at"])
    latest = max(began, key=lambda run_id: began[run_id])
    done = frozenset(r["stage"] for r in rows if r["run_id"] == latest and r["status"] == "done")
    return None if WHOLE_RUN in done else Resume(latest, done)


def run_in_order(
    spark: SparkSession,
    todo: Sequence[str],
    done: frozenset[str],
    run: Callable[[str, Callable[[], None]], None],
    parallel: int,
    all_ready: Callable[[], None] = lambda: None,
) -> list[str]:
    """Run each stage of ``todo`` not in ``done`` once the stages it needs (:data:`NEEDS`) are, up to ``parallel``
    at once; returns those run, in ``todo``'s order. After a failure no stage starts; those running finish, and
    the first failure is raised.

    ``run(stage, ready)`` calls ``ready()`` once the stage's tables are complete: the stages that need them start
    then, while it writes its bookkeeping (its ``runs`` row), which ``parallel`` does not count. ``all_ready()`` is
    called (in this thread) once every stage has called ``ready()``, unless one failed, while the last bookkeeping
    may still run.
    """
    finished = set(done)
    working: set[str] = set()  # started, tables not complete yet
    started: set[str] = set()
    alive = 0  # threads not ended: working, or writing their bookkeeping
    failure: BaseException | None = None
    events: queue.SimpleQueue[tuple[str, str, BaseException | None]] = queue.SimpleQueue()

    def body(stage: str) -> None:
        try:
            run(stage, lambda: events.put((stage, "ready", None)))
        except BaseException as exc:
            events.put((stage, "failed", exc))
        finally:
            events.put((stage, "ended", None))

    with ThreadPoolExecutor(max_workers=len(todo) or 1, thread_name_prefix="nightly-stage") as pool:
        while True:
            waiting = [s for s in todo if s not in finished and s not in started]
            ready = [s for s in waiting if all(n in finished for n in NEEDS[s] if n in todo)]
            for stage in ready[: parallel - len(working)] if failure is None else []:
                started.add(stage)
                working.add(stage)
                alive += 1
                # The caller's Spark job group and other local properties go with the stage into its thread.
                pool.submit(inheritable_thread_target(spark)(body), stage)
            if not alive:
                break
            stage, event, error = events.get()
            if event == "ready":
                working.discard(stage)
                finished.add(stage)
                if failure is None and finished.issuperset(todo):
                    all_ready()
            elif event == "failed":
                working.discard(stage)
                failure = failure or error
            else:
                alive -= 1
    if failure is not None:
        raise failure
    if done.issuperset(todo):  # nothing left to run: ready already
        all_ready()
    return [s for s in todo if s in finished and s not in done]


def stage_job_group(outer: str | None, stage: str) -> str:
    """The Spark job group of a nightly stage's jobs: ``<outer>/<stage>`` inside a caller's group ``outer``."""
    return f"{outer}/{stage}" if outer else f"nightly/{stage}"


def new_run_id(now: datetime) -> str:
    return f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


def run_stage(
    spark: SparkSession,
    cfg: Config,
    stage: str,
    source: Source,
    ingest_date: date | None = None,
    ready: Callable[[], None] = lambda: None,
) -> StageResult:
    """Run one stage on what is new since its last run (``ingest_date``: the partition of the new images, default
    today, UTC). ``ready()`` is called where the tables that later stages read are complete before the stage ends:
    ingest's ``images`` (before ``image_uris``), annotate's ``embeddings`` (before the other four)."""
    if stage == "ingest":
        c = ingest(spark, cfg, source, ingest_date=ingest_date, images_written=ready)
        return StageResult(c.listed, c.read, c.errors, "", c.summary())
    if stage == "annotate":
        a = annotate(spark, cfg, cfg.annotate.tasks, embeddings_written=ready)
        return StageResult(a.annotated, a.rows, a.errors, a.models, a.summary())
    if stage == "index:near_dup":
        n = index_near_duplicates(spark, cfg)
        return StageResult(n.hashed, n.pairs_added, n.errors, n.params_id, n.summary())
    if stage == "index:similar":
        s = index_similar(spark, cfg)
        if s is None:
            return StageResult(0, 0, 0, "", "similar: skipped (no embeddings from the configured embedder yet)")
        return StageResult(s.indexed, s.updated_images, s.missing, f"{s.model} {s.params_id}", s.summary())
    if stage == "index:search":
        b = index_search(spark, cfg)
        if b is None:
            return StageResult(0, 0, 0, "", "search buckets: skipped (no image vectors from the text model yet)")
        return StageResult(b.indexed, b.indexed, 0, f"{b.model} {b.params_id}", b.summary())
    raise ValueError(f"unknown stage {stage!r}")


def view_sources(cfg: Config) -> ViewSources:
    """The model versions and index parameters the views read: those this configuration makes."""
    tasks = cfg.annotate.tasks
    pinned = {t: configured_manifest(cfg, t) for t in ("classify", "caption", "embed") if t in tasks}
    classifier, captioner = (
        (pinned[t].name, pinned[t].version) if t in pinned else None for t in ("classify", "caption")
    )
    similar = similar_params(cfg, pinned["embed"]).params_id if "embed" in pinned else None
    return ViewSources(classifier, captioner, near_dup_params(cfg).params_id, similar)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def record(spark: SparkSession, cfg: Config, row: dict) -> None:
    append(local_frame(spark, [row], RUNS.schema), cfg, RUNS)


def nightly(
    spark: SparkSession,
    cfg: Config,
    source: Source | str,
    on_stage: Callable[[str, StageResult], None] = lambda stage, result: None,
    ingest_date: date | None = None,
) -> tuple[str, list[str]]:
    """Run (or resume) the nightly refresh of ``source``; returns the run id and the stages run this time.
    ``ingest_date``: the ``images`` partition of the night's new images (default: today, UTC).

    Before ingest, a configured model that the registry lacks and that comes with lakelens is installed, and every
    model is checked; the lake then remembers the run's annotate tasks and models (``lakelens.lake_settings``).

    A stage that fails is recorded as failed, and its exception goes on up: no stage starts after it (one running
    beside it finishes).
    Each stage's row is written once it is done (the stages that need its tables start meanwhile): a crash in a
    stage, or before its row, leaves that stage to be redone, and stages are incremental, so redoing one adds
    nothing twice.
    """
    source = open_source(source) if isinstance(source, str) else source
    install_missing_models(cfg, cfg.annotate.tasks)
    for task in cfg.annotate.tasks:  # a missing or unusable model stops the run before ingest, not after it
        checked_manifest(cfg, task)
    remember_annotate(cfg)  # the lake's later jobs read its tables with these models, with no --set
    config_hash, source_uri = cfg.digest(), normalise_uri(source.uri)
    resume = transform_resume(read_table(spark, cfg, RUNS), source_uri, config_hash)
    run_id = resume.run_id if resume else new_run_id(_now())
    done = resume.done if resume else frozenset()
    if resume:
        log.info("nightly: resuming run %s (done: %s)", run_id, ", ".join(sorted(done)) or "nothing")
    else:
        log.info("nightly: run %s of %s", run_id, source_uri)
    base = {"run_id": run_id, "config_hash": config_hash, "source": source_uri}
    run_started = _now()
    for stage in sorted(done):
        log.info("nightly: %s already done in this run", stage)

    def run_recorded(stage: str, ready: Callable[[], None]) -> None:
        # A session of its own (catalog, cache and executors shared): a stage's SQL settings stay its own.
        session = spark.newSession()
        context = spark.sparkContext
        # Under spark.scheduler.mode FAIR, stages running side by side share the executors' cores; a job group of
        # the stage's own (under the caller's, if any) keeps its progress logs to its own Spark jobs.
        context.setLocalProperty("spark.scheduler.pool", stage)
        outer = context.getLocalProperty("spark.jobGroup.id")
        context.setJobGroup(stage_job_group(outer, stage), f"lakelens nightly {run_id}: {stage}")
        started, clock = _now(), time.monotonic()
        signalled = threading.Event()

        def ready_once() -> None:
            if not signalled.is_set():
                signalled.set()
                ready()

        try:
            result = run_stage(session, cfg, stage, source, ingest_date, ready_once)
        except Exception as exc:
            message = f"{type(exc).__name__}: {next(iter(str(exc).splitlines()), '')}"
            record(spark, cfg, base | {"stage": stage, "status": "failed", "started_at": started,
                                       "ended_at": _now(), "message": message})  # fmt: skip
            raise
        seconds, ended = time.monotonic() - clock, _now()
        ready_once()
        record(spark, cfg, base | {
            "stage": stage, "status": "done", "started_at": started, "ended_at": ended,
            "rows_in": result.rows_in, "rows_out": result.rows_out, "errors": result.errors,
            "images_per_s": result.rows_in / seconds if seconds else 0.0, "models": result.models,
            "message": result.summary,
        })  # fmt: skip
        on_stage(stage, result)

    def publish_views() -> None:
        log.info("nightly: views %s", ", ".join(create_views(spark, cfg, view_sources(cfg))))

    # The views (definitions over the tables, not their rows) are made again once every stage has said its tables
    # are, beside the last stages' remaining writes and bookkeeping.
    ran = run_in_order(spark, stages(cfg), done, run_recorded, cfg.nightly.parallel_stages, publish_views)
    record(spark, cfg, base | {"stage": WHOLE_RUN, "status": "done", "started_at": run_started, "ended_at": _now(),
                               "message": f"stages run: {', '.join(ran) or 'none'}"})  # fmt: skip
    return run_id, ran
