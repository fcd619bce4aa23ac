"""The Python workers' upkeep: zip importers that keep their directory, garbage frozen once settled, and the
wrapper in a real Spark task."""

from __future__ import annotations

import gc
import importlib
import sys
import weakref
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from lakelens import pyworker
from lakelens.pyworker import mark_unsettled, settle_garbage, steady_zip_importers, worker_task


@pytest.fixture
def unfrozen():
    """Leave this test process as it was: nothing frozen, and the next settle freezes again."""
    yield
    gc.unfreeze()
    mark_unsettled()


def _zip_with(path: Path, modules: dict[str, str]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name, source in modules.items():
            archive.writestr(f"{name}.py", source)


def test_steady_zip_importer_keeps_its_directory(tmp_path: Path):
    archive = tmp_path / "code.zip"
    _zip_with(archive, {"zipped_a": "VALUE = 1\n"})
    sys.path.insert(0, str(archive))
    try:
        assert importlib.import_module("zipped_a").VALUE == 1
        assert steady_zip_importers() >= 1
        assert steady_zip_importers() == 0  # already steady
        _zip_with(archive, {"zipped_a": "VALUE = 1\n", "zipped_b": "VALUE = 2\n"})
        importlib.invalidate_caches()
        with pytest.raises(ImportError):  # a plain zip importer would have read the new directory and found it
            importlib.import_module("zipped_b")
        assert importlib.import_module("zipped_a").VALUE == 1
    finally:
        sys.path.remove(str(archive))
        sys.path_importer_cache.pop(str(archive), None)
        for name in ("zipped_a", "zipped_b"):
            sys.modules.pop(name, None)


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def _cycle() -> weakref.ref:
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_settle_collects_then_freezes_once_until_unsettled(unfrozen):
    mark_unsettled()
    garbage = _cycle()
    assert settle_garbage()
    assert garbage() is None  # collected before the freeze, not frozen with the survivors
    assert gc.get_freeze_count() > 0
    assert not settle_garbage()  # nothing new to freeze
    mark_unsettled()
    assert settle_garbage()


def test_worker_task_yields_the_same_frames_and_settles(unfrozen):
    mark_unsettled()
    frames = [pd.DataFrame({"x": [1, 2]}), pd.DataFrame({"x": [3]})]

    def double(batches):
        for frame in batches:
            yield frame * 2

    out = list(worker_task(double)(iter(frames)))
    assert [f["x"].tolist() for f in out] == [[2, 4], [6]]
    assert pyworker._settled_modules == len(sys.modules)


def test_worker_task_in_spark(spark):
    """Pickled into a real worker, the wrapper runs the function unchanged, after making the worker's zip importers
    (pyspark.zip's, there) steady."""

    def plain_zip_importers(batches):
        import zipimport

        plain = sum(type(i) is zipimport.zipimporter for i in sys.path_importer_cache.values())
        for frame in batches:
            yield frame.assign(plain=plain)

    rows = spark.range(6, numPartitions=2).mapInPandas(worker_task(plain_zip_importers), "id long, plain long")
    assert sorted(tuple(r) for r in rows.collect()) == [(i, 0) for i in range(6)]
