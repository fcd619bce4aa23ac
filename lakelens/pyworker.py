"""Upkeep of the Python workers that run lakelens' ``mapInPandas`` functions.

Spark reuses a Python worker for many tasks, and around each task PySpark's worker does two things whose cost grows
with what the worker holds:

- before the task, ``importlib.invalidate_caches()``: on Python 3.11 every zip importer then reads its archive's
  directory again (``pyspark.zip`` once per package imported from it, and the spark-core jar): about 70 ms a task;
- after the task, ``gc.collect()``: a full collection over every object the worker holds (with torch and the
  models loaded, about 100 ms a task).

A night of a thousand images runs a few dozen Python tasks: these were 18 % of its Python CPU (BENCHMARKS.md).
:func:`worker_task` wraps a function so that neither is repeated: the zip importers keep the directory they read
(the archives do not change while a worker lives), and once a worker holds new long-lived objects (its first task,
a module imported, a model loaded: :func:`mark_unsettled`) they are frozen (``gc.freeze``) at the end of the task,
so later collections look only at newer objects. Freezing happens only then, not after every task, so that a
task's own garbage is still collected.
"""

from __future__ import annotations

import functools
import gc
import sys
import zipimport
from collections.abc import Callable, Iterator
from typing import TypeVar

T = TypeVar("T")
U = TypeVar("U")

_settled_modules = 0  # len(sys.modules) when this process last froze its objects; 0: never


class _SteadyZipImporter(zipimport.zipimporter):
    """A zip importer that keeps the archive directory it read when it was made."""

    def invalidate_caches(self) -> None:
        return None


def steady_zip_importers() -> int:
    """Make this process's zip importers keep their archive directories; returns how many were changed."""
    changed = 0
    for importer in list(sys.path_importer_cache.values()):
        if type(importer) is zipimport.zipimporter:
            importer.__class__ = _SteadyZipImporter
            changed += 1
    return changed


def mark_unsettled() -> None:
    """Note that this process now holds new long-lived objects (a model loaded) to freeze after the task."""
    global _settled_modules
    _settled_modules = 0


def settle_garbage() -> bool:
    """Collect the garbage and freeze what survives, where the process holds long-lived objects not frozen yet
    (never frozen, modules imported since, or :func:`mark_unsettled`); returns whether it did."""
    global _settled_modules
    if _settled_modules == len(sys.modules):
        return False
    gc.collect()
    gc.freeze()
    _settled_modules = len(sys.modules)
    return True


def worker_task(fn: Callable[[Iterator[T]], Iterator[U]]) -> Callable[[Iterator[T]], Iterator[U]]:
    """``fn`` (a ``mapInPandas`` function) wrapped with the upkeep above."""

    @functools.wraps(fn)
    def task(frames: Iterator[T]) -> Iterator[U]:
        steady_zip_importers()
        yield from fn(frames)
        settle_garbage()

    return task
