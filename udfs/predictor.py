"""The Spark-free predict core every model task shares: image bytes in, one output row per image out.

Rows are re-batched to the model's batch size; the next batch is decoded and preprocessed by a thread pool while
the model runs on the current one; a row that cannot be decoded, that arrived with an ingest error, or that makes
the model fail becomes a row with ``error`` set and the task's outputs null. Rows in = rows out, in order.

Example:
    >>> predictor = EmbedPredictor(model, manifest, torch.device("cpu"), batch_size=64)
    >>> out = predict_frame(predictor, pd.DataFrame({"image_id": ids, "bytes": blobs}))
    >>> out.columns.tolist()
    ['image_id', 'vector', 'error', 'model', 'model_version']
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from torch import nn

from lakelens.config import PRECISIONS
from lakelens.imaging import decode_rgb_for
from lakelens.row_errors import PREPROCESSING_FAILED
from models.data import Preprocessing, preprocess_rgb
from models.registry import Manifest
from udfs.batching import RowFailure, rebatch, run_guarded


class PreprocessingError(RuntimeError):
    """A decoded image could not be made into the model's input: the model's settings are at fault, not the image."""


@dataclass(frozen=True)
class Prepared:
    """One decoded image ready for the model: pixels float32 [C, S, S] and its own (width, height)."""

    pixels: np.ndarray
    size: tuple[int, int]


class Predictor(ABC):
    """A model and what it outputs per image. Subclasses name their output columns and implement ``infer``."""

    outputs: ClassVar[tuple[str, ...]]

    def __init__(
        self,
        model: nn.Module,
        manifest: Manifest,
        device: torch.device,
        batch_size: int = 64,
        max_pixels: int | None = None,
        precision: str = "float32",
        **options: Any,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.model = model.to(device).eval()
        self.manifest = manifest
        self.device = device
        self.batch_size = batch_size
        self.max_pixels = max_pixels
        self.precision = precision
        self.prep = Preprocessing.from_manifest(manifest.preprocessing)
        self.configure(**options)

    def configure(self) -> None:  # noqa: B027 - an optional hook: a task without options (embed) keeps this one
        """Takes the task's own options (``top_k``, ``beam_size``, ...) and checks the manifest has what the task
        needs; subclasses with options override it."""

    def prepare(self, data: bytes) -> Prepared:
        """Decode (a large JPEG at reduced scale) and preprocess one image.

        Raises:
            ImageDecodeError: the bytes are not an image (the image's fault).
            PreprocessingError: the decoded image cannot be made into the model's input (the model's).
        """
        rgb, size = decode_rgb_for(data, self.prep.size, self.max_pixels)
        try:
            return Prepared(preprocess_rgb(rgb, self.prep), size)
        except Exception as exc:
            raise PreprocessingError(f"{type(exc).__name__}: {exc}") from exc

    def to_device(self, batch: Sequence[Prepared]) -> torch.Tensor:
        """The batch's pixels [N, C, S, S], channels last like the model's weights, on the model's device (through
        pinned memory to a GPU)."""
        pixels = torch.from_numpy(np.stack([p.pixels for p in batch])).contiguous(memory_format=torch.channels_last)
        if self.device.type == "cuda":
            return pixels.pin_memory().to(self.device, non_blocking=True)
        return pixels

    @contextmanager
    def inference(self) -> Iterator[None]:
        """No autograd; mixed precision: float16 on a GPU, bfloat16 on a CPU where ``precision`` asks for it.
        ``infer`` casts what it returns to float32 either way."""
        cuda = self.device.type == "cuda"
        with (
            torch.inference_mode(),
            torch.autocast(
                self.device.type,
                dtype=torch.float16 if cuda else torch.bfloat16,
                enabled=cuda or self.precision == "bfloat16",
            ),
        ):
            yield

    @abstractmethod
    def infer(self, batch: Sequence[Prepared]) -> list[dict[str, Any]]:
        """One dict of ``outputs`` per prepared image, in order."""


def predict_frames(
    predictor: Predictor, frames: Iterable[pd.DataFrame], decode_threads: int = 2, ahead: int = 1
) -> Iterator[pd.DataFrame]:
    """Annotate every row of ``frames`` (columns ``image_id``, ``bytes`` and optionally ``error``, an ingest error).

    Args:
        predictor: the model and its task.
        frames: input batches of any size (Arrow batches from Spark).
        decode_threads: threads decoding and preprocessing images.
        ahead: batches decoded ahead of the one the model is running.

    Yields:
        frames of up to ``predictor.batch_size`` rows: ``image_id``, the task's outputs, ``error``, ``model``,
        ``model_version``; one row per input row, in input order.
    """
    with (
        ThreadPoolExecutor(max(1, decode_threads), thread_name_prefix="lakelens-decode") as decoders,
        ThreadPoolExecutor(1, thread_name_prefix="lakelens-lookahead") as lookahead,
    ):
        queued: deque = deque()
        for frame in rebatch(frames, predictor.batch_size):
            queued.append(lookahead.submit(_prepare_frame, predictor, frame, decoders))
            if len(queued) > ahead:
                yield _annotate(predictor, *queued.popleft().result())
        while queued:
            yield _annotate(predictor, *queued.popleft().result())


def predict_frame(predictor: Predictor, frame: pd.DataFrame, decode_threads: int = 2) -> pd.DataFrame:
    """All rows of one frame annotated (see :func:`predict_frames`)."""
    parts = list(predict_frames(predictor, [frame], decode_threads))
    return concat_rows(parts) if parts else _empty(predictor)


def concat_rows(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """The rows of ``frames`` (the same columns) in one frame, each column's dtype inferred from all its values as
    if made at once: ``pd.concat`` infers it from the frames where the column is not all null (a batch of failed
    rows has null outputs), which pandas deprecates."""
    return pd.DataFrame({column: [v for f in frames for v in f[column].tolist()] for column in frames[0].columns})


def _prepare_frame(
    predictor: Predictor, frame: pd.DataFrame, decoders: ThreadPoolExecutor
) -> tuple[pd.DataFrame, list[Prepared | RowFailure]]:
    errors = frame["error"] if "error" in frame.columns else [None] * len(frame)

    def prepare(data: Any, error: Any) -> Prepared | RowFailure:
        if isinstance(error, str):
            return RowFailure(f"ingest error: {error}")
        if data is None or (isinstance(data, float) and np.isnan(data)):
            return RowFailure("no image bytes")
        try:
            return predictor.prepare(bytes(data))
        except PreprocessingError as exc:
            return RowFailure(f"{PREPROCESSING_FAILED}: {exc}"[:500])
        except Exception as exc:  # noqa: BLE001 - a bad image is a row with an error, whatever the decoder raised
            return RowFailure(f"decode failed: {exc}"[:500])

    return frame, list(decoders.map(prepare, frame["bytes"], errors))


def _annotate(predictor: Predictor, frame: pd.DataFrame, prepared: list[Prepared | RowFailure]) -> pd.DataFrame:
    return pd.DataFrame(_outputs(predictor, frame, prepared))


def _outputs(predictor: Predictor, frame: pd.DataFrame, prepared: list[Prepared | RowFailure]) -> dict[str, list]:
    """The output columns of ``frame``'s rows as lists (null outputs as None)."""
    good = [i for i, p in enumerate(prepared) if isinstance(p, Prepared)]
    results: list[Any] = list(prepared)
    if good:
        found = run_guarded(predictor.infer, [prepared[i] for i in good])
        for i, result in zip(good, found, strict=True):
            results[i] = result
    columns: dict[str, list] = {"image_id": frame["image_id"].tolist()}
    for name in predictor.outputs:
        columns[name] = [None if isinstance(r, RowFailure) else r[name] for r in results]
    columns["error"] = [r.reason if isinstance(r, RowFailure) else None for r in results]
    columns["model"] = [predictor.manifest.name] * len(frame)
    columns["model_version"] = [predictor.manifest.version] * len(frame)
    return columns


def predict_tasks(
    predictors: Mapping[str, Predictor], frames: Iterable[pd.DataFrame], decode_threads: int = 2, ahead: int = 1
) -> Iterator[pd.DataFrame]:
    """Several tasks in one pass: each image is read once, decoded once per distinct preprocessing, and run
    through the tasks it is asked for.

    Args:
        predictors: task name -> its predictor.
        frames: input batches with ``image_id``, ``bytes``, optionally ``error`` (an ingest error), and a boolean
            ``todo_<task>`` per task: whether that task runs on the row.
        decode_threads: threads decoding and preprocessing images.
        ahead: batches decoded ahead of the one the models are running.

    Yields:
        frames of ``image_id`` and, per task, the columns :func:`predict_frames` gives (but ``image_id``) named
        ``<task>__<column>``, null where the task was not asked for; one row per input row, in input order. A
        task's rows are those :func:`predict_frames` gives for the same rows.
    """
    groups: dict[tuple, list[str]] = {}
    for task, predictor in predictors.items():  # a predictor with its own prepare (colourise) is a group apart
        groups.setdefault((type(predictor).prepare, predictor.prep, predictor.max_pixels), []).append(task)
    size = min(p.batch_size for p in predictors.values())
    with (
        ThreadPoolExecutor(max(1, decode_threads), thread_name_prefix="lakelens-decode") as decoders,
        ThreadPoolExecutor(1, thread_name_prefix="lakelens-lookahead") as lookahead,
    ):
        queued: deque = deque()
        for frame in rebatch(frames, size):
            queued.append(lookahead.submit(_prepare_tasks, predictors, list(groups.values()), frame, decoders))
            if len(queued) > ahead:
                yield _annotate_tasks(predictors, *queued.popleft().result())
        while queued:
            yield _annotate_tasks(predictors, *queued.popleft().result())


def _prepare_tasks(
    predictors: Mapping[str, Predictor], groups: list[list[str]], frame: pd.DataFrame, decoders: ThreadPoolExecutor
) -> tuple[pd.DataFrame, dict[str, list[Prepared | RowFailure | None]]]:
    """Each row decoded once for each group of tasks sharing a preprocessing (None where none of them runs)."""
    prepared: dict[str, list[Prepared | RowFailure | None]] = {}
    for tasks in groups:
        wanted = np.flatnonzero(np.logical_or.reduce([frame[f"todo_{t}"].to_numpy(bool) for t in tasks]))
        _, done = _prepare_frame(predictors[tasks[0]], frame.iloc[wanted], decoders)
        column: list[Prepared | RowFailure | None] = [None] * len(frame)
        for i, p in zip(wanted, done, strict=True):
            column[i] = p
        prepared |= dict.fromkeys(tasks, column)
    return frame, prepared


def _annotate_tasks(
    predictors: Mapping[str, Predictor], frame: pd.DataFrame, prepared: dict[str, list[Prepared | RowFailure | None]]
) -> pd.DataFrame:
    columns: dict[str, list] = {"image_id": frame["image_id"].tolist()}
    for task, predictor in predictors.items():
        rows = np.flatnonzero(frame[f"todo_{task}"].to_numpy(bool))
        found = _outputs(predictor, frame.iloc[rows], [prepared[task][i] for i in rows])
        for name, values in list(found.items())[1:]:
            column: list = [None] * len(frame)
            for i, value in zip(rows, values, strict=True):
                column[i] = value
            columns[f"{task}__{name}"] = column
    return pd.DataFrame(columns)


def _empty(predictor: Predictor) -> pd.DataFrame:
    return pd.DataFrame(columns=["image_id", *predictor.outputs, "error", "model", "model_version"])
