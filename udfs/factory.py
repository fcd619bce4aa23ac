"""One factory for every model task: a ``mapInPandas`` function over a Spark-free predictor.

The driver reads the model's manifest and weights once and ships them (a broadcast) with the function, so
executors need no access to the registry; each Python worker builds the model once and keeps it.

Example:
    >>> spec = ModelUdfSpec("embed", manifest, spark.sparkContext.broadcast(weights))
    >>> images.select("image_id", "bytes", "error").mapInPandas(make_model_udf(spec), udf_schema(EMBEDDINGS))
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from pyspark import TaskContext
from pyspark.sql.types import StringType, StructField, StructType

from lakelens.schemas import TableSpec
from lakelens.tasks import TASKS
from models.registry import Manifest
from udfs.predictor import Predictor, predict_frames, predict_tasks
from udfs.runtime import cached_model, pick_device, set_threads

# Columns the UDF leaves to the job (the same for every row of a run).
JOB_COLUMNS = ("annotated_at",)


@dataclass(frozen=True)
class ModelUdfSpec:
    """What a model UDF runs.

    Args:
        task: a key of ``lakelens.tasks.TASKS``.
        manifest: the registry manifest of the model.
        weights: the safetensors bytes, or a Spark broadcast of them.
        batch_size: images per model call.
        decode_threads: threads decoding the next batch while the model runs.
        max_pixels: larger images are error rows (decompression bombs).
        options: the task's own settings (top_k, threshold, min_score, beam_size, ...).
        precision: the model's arithmetic on a CPU, ``float32`` or ``bfloat16`` (a GPU runs float16 either way).
    """

    task: str
    manifest: Manifest
    weights: Any
    batch_size: int = 64
    decode_threads: int = 2
    max_pixels: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    precision: str = "float32"

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; known: {', '.join(TASKS)}")
        wanted = TASKS[self.task].architectures
        if self.manifest.architecture not in wanted:
            others = f" (it also runs {', '.join(wanted[1:])})" if len(wanted) > 1 else ""
            raise ValueError(
                f"task {self.task} runs {wanted[0]} models, but model {self.manifest.name} {self.manifest.version} "
                f"is a {self.manifest.architecture}{others}"
            )


def udf_schema(table: TableSpec) -> StructType:
    """The columns a model UDF returns for ``table``: all but those the job adds."""
    return StructType([f for f in table.schema.fields if f.name not in JOB_COLUMNS])


def task_resources() -> tuple[list[str], int]:
    """The running Spark task's GPU addresses and CPU cores (outside a task: none, and this machine's cores)."""
    context = TaskContext.get()
    if context is None:
        return [], os.cpu_count() or 1
    gpu = context.resources().get("gpu")
    return list(gpu.addresses) if gpu else [], context.cpus()


def make_model_udf(spec: ModelUdfSpec) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """A ``mapInPandas`` function: frames of (image_id, bytes, error) -> frames of ``udf_schema(table)``."""

    def annotate(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        gpus, cores = task_resources()
        set_threads(cores)
        yield from predict_frames(_predictor(spec, pick_device(gpus)), frames, spec.decode_threads)

    return annotate


def make_tasks_udf(specs: Sequence[ModelUdfSpec]) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """A ``mapInPandas`` function running several tasks in one pass: frames of (image_id, bytes, error and a
    boolean ``todo_<task>`` per spec) -> frames of :func:`tasks_udf_schema` (see ``predict_tasks``)."""
    if len({spec.task for spec in specs}) != len(specs):
        raise ValueError(f"one spec per task, got {[spec.task for spec in specs]}")

    def annotate(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        gpus, cores = task_resources()
        set_threads(cores)
        device = pick_device(gpus)
        predictors = {spec.task: _predictor(spec, device) for spec in specs}
        yield from predict_tasks(predictors, frames, max(spec.decode_threads for spec in specs))

    return annotate


def task_udf_fields(task: str) -> list[StructField]:
    """The columns the task's predictor gives beside ``image_id``: those of each of its tables (its own first),
    once each."""
    fields: dict[str, StructField] = {}
    for table in TASKS[task].tables:
        for f in udf_schema(table).fields:
            if f.name != "image_id":
                fields.setdefault(f.name, f)
    return list(fields.values())


def tasks_udf_schema(tasks: Sequence[str]) -> StructType:
    """The columns of :func:`make_tasks_udf` for ``tasks``: ``image_id``, then each task's
    :func:`task_udf_fields` as ``<task>__<column>``, all nullable (null where a task did not run)."""
    fields = [StructField("image_id", StringType(), False)]
    for task in tasks:
        fields += [StructField(f"{task}__{f.name}", f.dataType, True) for f in task_udf_fields(task)]
    return StructType(fields)


def _predictor(spec: ModelUdfSpec, device: torch.device) -> Predictor:
    """The spec's predictor on ``device``, over the model this Python worker keeps."""
    weights = spec.weights.value if hasattr(spec.weights, "value") else spec.weights
    model = cached_model(spec.manifest, weights, device)
    return predictor_class(spec.task)(
        model, spec.manifest, device, spec.batch_size, spec.max_pixels, precision=spec.precision, **spec.options
    )


@functools.cache
def predictor_class(task: str) -> type[Predictor]:
    """The predictor class the task declares (``module:Class``)."""
    module, name = TASKS[task].predictor.split(":")
    return getattr(importlib.import_module(module), name)
