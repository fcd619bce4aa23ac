"""Batches for a model: re-batching Arrow batches to the model's size, and running a batch so that one bad row
or an out-of-memory error never fails the rest."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

import pandas as pd
import torch

from lakelens.row_errors import MODEL_FAILED, OUT_OF_MEMORY

log = logging.getLogger("lakelens.udfs")

T = TypeVar("T")
R = TypeVar("R")


class RowFailure:
    """A row the model could not process: why."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"RowFailure({self.reason!r})"


def rebatch(frames: Iterable[pd.DataFrame], size: int) -> Iterator[pd.DataFrame]:
    """The rows of ``frames`` in order, as frames of exactly ``size`` rows (the last may be shorter)."""
    if size < 1:
        raise ValueError(f"batch size must be >= 1, got {size}")
    held: list[pd.DataFrame] = []
    count = 0
    for frame in frames:
        start = 0
        while start < len(frame):
            take = min(size - count, len(frame) - start)
            held.append(frame.iloc[start : start + take])
            count += take
            start += take
            if count == size:
                yield pd.concat(held, ignore_index=True)
                held, count = [], 0
    if count:
        yield pd.concat(held, ignore_index=True)


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is a device (or host) allocation failure, worth a retry with fewer rows."""
    return isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError)) or "out of memory" in str(exc).lower()


def run_guarded(run: Callable[[Sequence[T]], list[R]], items: Sequence[T]) -> list[R | RowFailure]:
    """``run(items)`` with one result per item; where it raises, the items are split in halves and each run
    again, so only the rows that fail get a :class:`RowFailure` (an out-of-memory error is retried the same
    way, on smaller batches, after the CUDA cache is emptied)."""
    try:
        results = run(items)
        if len(results) != len(items):
            raise RuntimeError(f"the model gave {len(results)} results for {len(items)} rows")
        return list(results)
    except Exception as exc:  # noqa: BLE001 - any failure is data here: split, and blame single rows only
        out_of_memory = is_out_of_memory(exc)
        if out_of_memory and torch.cuda.is_available():
            torch.cuda.empty_cache()
        if len(items) == 1:
            kind = OUT_OF_MEMORY if out_of_memory else MODEL_FAILED
            return [RowFailure(f"{kind}: {type(exc).__name__}: {exc}"[:500])]
        half = len(items) // 2
        log.warning("a batch of %d rows failed (%s: %s); retrying in halves", len(items), type(exc).__name__, exc)
        return run_guarded(run, items[:half]) + run_guarded(run, items[half:])
