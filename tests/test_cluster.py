"""The package (``./build.sh package``) under spark-submit on a real multi-process Spark: a ``local-cluster`` master
starts executor JVMs of their own, whose Python comes from the packed environment and whose code comes from the
code zip. One executor is killed while the models run; the lake must still equal a ``local[2]`` run's."""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pyspark
import pytest
from conftest import SCENE_ARGS

from lakelens.config import load_config
from lakelens.lake import table_dataset
from lakelens.scenes import generate_scenes
from lakelens.schemas import (
    CAPTIONS,
    DETECTIONS,
    DUP_GROUPS,
    EMBEDDINGS,
    IMAGE_URIS,
    IMAGES,
    LABELS,
    NEAR_DUP_PAIRS,
    RUNS,
    SEGMENTS,
    SIGNATURES,
    SIMILAR,
    TableSpec,
)

REPO = Path(__file__).resolve().parent.parent
PER_IMAGE = (IMAGES, IMAGE_URIS, LABELS, DETECTIONS, SEGMENTS, CAPTIONS, EMBEDDINGS, SIGNATURES)
TABLES = (*PER_IMAGE, NEAR_DUP_PAIRS, DUP_GROUPS, SIMILAR)
# Columns that say when a row was written, not what it holds.
WHEN = {"ingest_date", "annotated_at", "indexed_at", "created_at", "modified"}  # a run past midnight has a new date
KEYS = {NEAR_DUP_PAIRS.name: ["image_id_a", "image_id_b"], SIMILAR.name: ["image_id", "rank"]}
ANNOTATE_DONE = "embed: embedder"  # a line of the annotate stage's summary, printed when the stage ends
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def spark_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """pyspark's Spark with a ``work`` folder of its own: local-cluster's workers unpack every executor's archives
    under ``SPARK_HOME/work``, which is otherwise inside the virtual environment."""
    home = tmp_path_factory.mktemp("spark_home")
    for entry in Path(pyspark.__file__).parent.iterdir():
        if entry.name != "work":
            (home / entry.name).symlink_to(entry)
    yield home
    shutil.rmtree(home / "work", ignore_errors=True)  # an unpacked environment per executor: 1.3 GB each


def clean_env(spark_home: Path) -> dict[str, str]:
    """This environment with that Spark's spark-submit first on PATH, and without PYTHONPATH or PYSPARK_*: the code
    comes from the package's zip only, and the Pythons from spark-submit's settings."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON")}
    path = f"{spark_home / 'bin'}:{env['PATH']}"
    return env | {"SPARK_LOCAL_IP": "127.0.0.1", "SPARK_HOME": str(spark_home), "PATH": path}


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    built = subprocess.run(["./build.sh", "package", "--out", str(out)], cwd=REPO, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    assert {p.name for p in out.iterdir()} == {
        "lakelens_code.zip",
        "lakelens_env.tar.gz",
        "models",
        "lakelens_models.tar.gz",
        "lakelens_job.py",
    }
    return out


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("scenes")
    generate_scenes(folder, n=16, seed=11, workers=1, dup_fraction=0.3, similar_fraction=0.2)
    (folder / "images" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    return folder / "images"


def submit(dist: Path, lake: Path, source: Path) -> list[str]:
    """The spark-submit command line of README.md's standalone example, on a local-cluster master."""
    return [
        "spark-submit", "--master", "local-cluster[2,1,1024]",
        "--conf", "spark.pyspark.python=./environment/bin/python",
        "--conf", f"spark.pyspark.driver.python={sys.executable}",
        "--archives", f"{dist / 'lakelens_env.tar.gz'}#environment", "--py-files", str(dist / "lakelens_code.zip"),
        str(dist / "lakelens_job.py"), "nightly", "--source", str(source), "--lake", str(lake),
        "--set", f"models.registry={dist / 'models'}", *SCENE_ARGS,
    ]  # fmt: skip


def descendants(pid: int) -> Iterator[psutil.Process]:
    try:
        yield from psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return


def executor_running_a_model(pid: int) -> psutil.Process | None:
    """An executor JVM under ``pid`` one of whose Python workers has torch loaded (a model UDF is running)."""
    for proc in descendants(pid):
        try:
            if "CoarseGrainedExecutorBackend" not in " ".join(proc.cmdline()):
                continue
            for worker in proc.children(recursive=True):
                if any("libtorch" in m.path for m in worker.memory_maps()):
                    # The executors' Python is the packed one, unpacked from --archives.
                    assert worker.cmdline()[0].endswith("environment/bin/python"), worker.cmdline()
                    return proc
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return None


def kill_an_executor_while_annotating(job: subprocess.Popen, stdout: Path, timeout: float = 400) -> int:
    """Wait until the annotate stages run on an executor, SIGKILL that executor's JVM; returns its pid."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and job.poll() is None:
        printed = stdout.read_text()
        if "ingest: listed" in printed and ANNOTATE_DONE not in printed:
            executor = executor_running_a_model(job.pid)
            if executor is not None:
                os.kill(executor.pid, signal.SIGKILL)
                assert ANNOTATE_DONE not in stdout.read_text(), "the kill came after the annotate stages"
                return executor.pid
        time.sleep(0.2)
    raise AssertionError(f"no executor ran a model before the job ended: {stdout.read_text()}")


def lake_rows(lake: Path, spec: TableSpec) -> list[dict]:
    """A table's rows without the columns that say when they were written, in key order."""
    cfg = load_config(overrides=[f"lake.root={lake}"])
    frame = table_dataset(cfg, spec).to_table().to_pandas()
    frame = frame.drop(columns=[c for c in frame.columns if c in WHEN])
    keys = KEYS.get(spec.name, ["image_id", *(["uri"] if spec is IMAGE_URIS else [])])
    keys += ["model"] if "model" in frame.columns and spec.name not in KEYS else []  # embed and search share a table
    return frame.sort_values(keys).to_dict("records")


def same(a: object, b: object, tol: float = 1e-4) -> bool:
    """Equal, floats within ``tol`` (the executors run torch on other thread counts than local[2] does)."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=0.0, abs_tol=tol) or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k], tol) for k in a)
    if hasattr(a, "tolist") and hasattr(b, "tolist"):
        return same(a.tolist(), b.tolist(), tol)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y, tol) for x, y in zip(a, b, strict=True))
    return a == b


def test_spark_submit_to_a_cluster_with_an_executor_killed_equals_the_local_run(
    dist: Path, source: Path, spark_home: Path, tmp_path: Path
) -> None:
    env = clean_env(spark_home)
    local = subprocess.run(
        [sys.executable, "-m", "jobs.nightly", "--source", str(source), "--lake", str(tmp_path / "local"),
         "--set", f"models.registry={dist / 'models'}", "--set", "spark.master=local[2]", *SCENE_ARGS],
        cwd=REPO, env=env | {"PYSPARK_PYTHON": sys.executable}, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert local.returncode == 0, local.stderr

    lake, work = tmp_path / "cluster", tmp_path / "submit"
    work.mkdir()
    stdout, stderr = work / "stdout.txt", work / "stderr.txt"
    with stdout.open("w") as out, stderr.open("w") as err:
        job = subprocess.Popen(submit(dist, lake, source), cwd=work, env=env, stdout=out, stderr=err)
        try:
            killed = kill_an_executor_while_annotating(job, stdout)
            assert job.wait(timeout=600) == 0, stderr.read_text()[-3000:]
        finally:
            if job.poll() is None:
                job.kill()
    assert not psutil.pid_exists(killed) or psutil.Process(killed).status() == psutil.STATUS_ZOMBIE
    log = stderr.read_text()
    assert "Lost executor" in log or "ExecutorLostFailure" in log
    assert "nightly: run" in stdout.read_text()

    n_images = 17
    for spec in TABLES:
        cluster_rows, local_rows = lake_rows(lake, spec), lake_rows(tmp_path / "local", spec)
        if spec in PER_IMAGE:  # one row per image from each model that writes the table
            models = {r.get("model") for r in cluster_rows}
            assert len({(r["image_id"], r.get("model")) for r in cluster_rows}) == len(cluster_rows), spec.name
            assert len(cluster_rows) == n_images * len(models), spec.name
        assert len(cluster_rows) == len(local_rows) and all(
            same(c, loc) for c, loc in zip(cluster_rows, local_rows, strict=True)
        ), spec.name
    assert len(lake_rows(lake, NEAR_DUP_PAIRS)) > 0 and len(lake_rows(lake, SIMILAR)) > 0

    before = {spec.name: lake_rows(lake, spec) for spec in TABLES}
    again = subprocess.run(submit(dist, lake, source), cwd=work, env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-3000:]
    for spec in TABLES:
        assert same(lake_rows(lake, spec), before[spec.name], tol=0.0), spec.name
    cfg = load_config(overrides=[f"lake.root={lake}"])
    runs = table_dataset(cfg, RUNS).to_table().to_pandas()
    second = runs[runs.run_id == runs.sort_values("started_at").run_id.iloc[-1]]
    assert set(second.status) == {"done"} and second[second.stage != "nightly"].rows_out.sum() == 0
