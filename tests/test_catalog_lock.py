"""A busy embedded catalog is found from Derby's lock file before Spark starts, and said in one line naming its
holder; the catalog's own stack traces stay off the console."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lakelens.catalog_lock import LOCK_FILE, _ancestors, foreign_holder, lock_pid
from lakelens.config import load_config
from lakelens.lake import ensure_database
from lakelens.spark import build_session

REPO = Path(__file__).resolve().parent.parent
# Takes Derby's kind of lock (a POSIX record lock on the whole file, as Java's FileChannel.tryLock does), says so,
# and with "--child" starts a process of its own and prints its pid.
HOLDER = """
import fcntl, subprocess, sys, time
lock = open(sys.argv[1], "a")
fcntl.lockf(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
child = subprocess.Popen(["sleep", "120"]) if "--child" in sys.argv else None
print("locked", child.pid if child else 0, flush=True)
time.sleep(120)
"""
# Starts the holder and exits, so that the holder is nobody's child in this test's family (as another job is).
DETACH = """
import subprocess, sys
holder = subprocess.Popen(
    [sys.executable, *sys.argv[1:]], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL
)
print(holder.pid, holder.stdout.readline().decode().strip(), flush=True)
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}


@pytest.fixture
def metastore(tmp_path: Path) -> Path:
    folder = tmp_path / "metastore_db"
    folder.mkdir()
    (tmp_path / "holder.py").write_text(HOLDER)
    return folder


@pytest.fixture
def stray_pids() -> Iterator[list[int]]:
    """Processes a test detached (no longer its children): killed by pid at the end."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def test_a_lock_held_by_another_job_is_found_with_its_pid_and_command(metastore: Path, stray_pids: list[int]) -> None:
    script = str(metastore.parent / "holder.py")
    lock = str(metastore / LOCK_FILE)
    started = subprocess.run(
        [sys.executable, "-c", DETACH, script, lock], capture_output=True, text=True, timeout=60, check=True
    )
    pid_text, said, _ = started.stdout.split()
    pid = int(pid_text)
    stray_pids.append(pid)
    assert said == "locked"

    holder = foreign_holder(metastore)
    assert holder is not None
    assert (holder.pid, holder.job_pid) == (pid, pid)
    assert holder.command == f"{Path(sys.executable).name} {script} {lock}"
    assert holder.describe() == f"process {pid} ({holder.command})"


def test_a_free_or_missing_lock_is_no_holder(metastore: Path) -> None:
    assert foreign_holder(metastore) is None  # no lock file: a new catalog
    assert foreign_holder(metastore.parent / "nowhere") is None
    (metastore / LOCK_FILE).write_text("")  # left by a job that ended: the kernel dropped its lock
    assert lock_pid(metastore) is None
    assert foreign_holder(metastore) is None


def test_a_lock_held_by_this_job_or_its_own_processes_is_not_foreign(metastore: Path) -> None:
    # PySpark's JVM is a child of the job's Python; under spark-submit the JVM is Python's parent.
    holder = subprocess.Popen(
        [sys.executable, str(metastore.parent / "holder.py"), str(metastore / LOCK_FILE), "--child"],
        stdout=subprocess.PIPE,
        text=True,
    )
    said, child = holder.stdout.readline().split()
    try:
        assert said == "locked"
        assert lock_pid(metastore) == holder.pid  # the probe sees the lock...
        assert foreign_holder(metastore) is None  # ...of this process's child
        assert foreign_holder(metastore, me=int(child)) is None  # ...and of the child's parent
        assert foreign_holder(metastore, me=holder.pid) is None
    finally:
        os.kill(int(child), signal.SIGTERM)
        holder.kill()
        holder.wait()


def test_the_tests_own_session_and_a_second_session_in_it_are_not_refused(spark, lake_root: Path) -> None:
    metastore = lake_root / "metastore_db"
    jvm = lock_pid(metastore)
    assert jvm is not None, "the session's Derby holds no lock on dbex.lck: the probe would find no holder"
    assert os.getpid() in _ancestors(jvm)
    assert foreign_holder(metastore) is None
    again = build_session(
        load_config(overrides=["spark.master=local[2]", f"lake.root={lake_root}", "lake.database=test_session"])
    )
    assert again is spark


def test_sql_on_a_busy_lake_exits_at_once_naming_the_holder(spark, lake_root: Path) -> None:
    # This test's own session holds the lake's Derby; to the job started here it is another job.
    began = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "jobs.sql", "SELECT 1", "--lake", str(lake_root), "--set", "lake.database=test_session"],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    took = time.monotonic() - began
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    assert errors[0].startswith(
        f"error: MetastoreBusyError: the lake's catalog {lake_root / 'metastore_db'} is in use by process "
        f"{os.getpid()} ("
    )
    assert "wait for that job to end, or use an external metastore" in errors[0]
    assert len(lines) < 30, result.stderr[-3000:]
    assert took < 15, f"{took:.1f} s: the job started Spark before it refused the lake"


@pytest.mark.slow  # starts a JVM of its own (about 13 s here)
def test_a_refusal_by_derby_itself_keeps_its_traces_off_the_console(spark, cfg, lake_root: Path) -> None:
    # The check before Spark starts is blinded, as when another job takes the catalog just after it: Derby refuses,
    # Hive's metastore gives up after one immediate retry, and its stack traces go to <lake>/metastore.log.
    blind = (
        "import sys, lakelens.spark as s\n"
        "from lakelens.catalog_lock import foreign_holder\n"
        "calls = []\n"
        "s.foreign_holder = lambda m, me=None: calls.append(m) or (foreign_holder(m, me) if len(calls) > 1 else None)\n"
        "from lakelens.cli import run_job\n"
        "from jobs.sql import main\n"
        "run_job(main, sys.argv[1:])\n"
    )
    log = lake_root / "metastore.log"
    log.unlink(missing_ok=True)
    result = subprocess.run(
        [sys.executable, "-c", blind, "SELECT 1", "--lake", str(lake_root), "--set", "lake.database=test_session"],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[-1].startswith("error: MetastoreBusyError: "), result.stderr[-3000:]
    assert f"in use by process {os.getpid()} (" in lines[-1]
    assert not [line for line in lines if line.lstrip().startswith("at org.")], result.stderr[-3000:]
    assert len(lines) < 60, result.stderr[-3000:]
    traces = log.read_text()
    assert "XSDB6" in traces  # Derby: another instance may have already booted the database
    assert "Retrying HMSHandler after 0 ms (attempt 1 of 1)" in traces
    ensure_database(spark, cfg)  # the holder's catalog still works
    assert spark.catalog.databaseExists(cfg.lake.database)
