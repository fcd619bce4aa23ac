"""The one Spark session builder: master, Hive catalog under the lake root, Python and loopback settings."""

from __future__ import annotations

import atexit
import functools
import logging
import os
import re
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
from py4j.protocol import Py4JJavaError
from pyspark import SparkContext
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.pandas.types import to_arrow_schema
from pyspark.sql.types import StructType, _parse_datatype_string

from lakelens.catalog_lock import busy_message, foreign_holder
from lakelens.config import CONF_DIR, Config
from lakelens.errors import InputError
from lakelens.lake import ensure_database, lake_uri, local_lake_root, warehouse_uri
from lakelens.lake_settings import lake_exists, remember

log = logging.getLogger(__name__)

REPO_ROOT = CONF_DIR.parent
SHUFFLE_PARTITIONS = "spark.sql.shuffle.partitions"
# What executors import: the core, the models and the UDFs (jobs run on the driver only).
CODE_PACKAGES = ("lakelens", "models", "udfs")


def under_spark_submit() -> bool:
    """True when spark-submit launched this Python process (it then owns the master and the JVM)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def build_session(cfg: Config) -> SparkSession:
    """Build (or join) the SparkSession for ``cfg`` and make sure the lake's database exists.

    The master comes from spark-submit when there is one, else from ``spark.master``. With the ``derby``
    metastore, the catalog (embedded Derby) and the warehouse live under the lake root, so tables are found by
    name by every later process that uses the same lake.

    Raises:
        MetastoreBusyError: another job holds the lake's embedded catalog; found before Spark starts when it
            already holds it, else when the catalog refuses this session.
    """
    if cfg.lake.metastore == "derby":
        # Derby would refuse the second process only after Spark's start and the metastore's retries (half a minute
        # of stack traces); the lock file says at once whose the catalog is.
        metastore = _local_root(cfg) / "metastore_db"
        holder = foreign_holder(metastore)
        if holder is not None:
            raise MetastoreBusyError(busy_message(metastore, holder))
    submitted = under_spark_submit()
    master = None if submitted else cfg.spark.master
    if master and master.startswith("local"):
        # Spark binds and advertises this address; only loopback, never the machine's network interfaces.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

    builder = SparkSession.builder.appName(cfg.spark.app_name)
    if master:
        builder = builder.master(master)
    for key, value in catalog_conf(cfg).items():
        builder = builder.config(key, value)
    for key, value in cfg.spark.conf.items():
        builder = builder.config(key, value)
    cores = local_cores(master) if master else None
    if cores and SHUFFLE_PARTITIONS not in cfg.spark.conf:
        # A night's shuffles are small: a reduce task per core, not Spark's 200 (or a laptop-sized 8 on 2 cores,
        # whose extra tasks cost the near-duplicate stage 0.7 s of 8 here; see BENCHMARKS.md).
        builder = builder.config(SHUFFLE_PARTITIONS, str(cores))
    if not submitted:
        builder = builder.config("spark.driver.extraJavaOptions", _driver_java_options(cfg))
        if master and master.startswith("local"):
            builder = builder.config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")

    spark = builder.enableHiveSupport().getOrCreate()
    spark.sparkContext.setLogLevel(cfg.spark.log_level)
    if master and not _in_process(master):
        # Executors of their own (local-cluster, standalone) import the project's code from a zip the session
        # ships; under spark-submit, --py-files does that.
        spark.sparkContext.addPyFile(str(code_zip()))
    new_lake = not lake_exists(cfg)
    try:
        ensure_database(spark, cfg)
    except AnalysisException as exc:
        if cfg.lake.metastore == "derby" and "SessionHiveMetaStoreClient" in str(exc):
            # Another job took the catalog between the check above and Spark's start (or the holder is out of
            # sight): name it if it can be found now. The traces are in <lake>/metastore.log.
            metastore = _local_root(cfg) / "metastore_db"
            raise MetastoreBusyError(busy_message(metastore, foreign_holder(metastore))) from exc
        raise
    if new_lake:
        remember(cfg)  # a lake made with its own registry keeps using it without a --set on every job
    log.info("spark %s master=%s lake=%s", spark.version, spark.sparkContext.master, lake_uri(cfg))
    return spark


def local_cores(master: str) -> int | None:
    """The cores a local master runs tasks on (``local``, ``local[N]``, ``local[*]``, ``local[N,F]``,
    ``local-cluster[W,C,M]``); None for a cluster manager."""
    if master == "local":
        return 1
    found = re.fullmatch(r"local\[(\*|\d+)(?:,\d+)?\]", master)
    if found:
        return (os.cpu_count() or 1) if found[1] == "*" else int(found[1])
    found = re.fullmatch(r"local-cluster\[\s*(\d+)\s*,\s*(\d+)\s*,\s*\d+\s*\]", master)
    return int(found[1]) * int(found[2]) if found else None


def _in_process(master: str) -> bool:
    """Whether the master runs executors inside this process (``local``, ``local[N]``), where imports just work."""
    return master == "local" or master.startswith("local[")


@functools.cache
def code_zip() -> Path:
    """A zip of the project's importable packages (Python files only) for executors, made once per process."""
    folder = tempfile.mkdtemp(prefix="lakelens-code-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return write_code_zip(Path(folder) / "lakelens_code.zip", CODE_PACKAGES)


def write_code_zip(zipped: Path, packages: Sequence[str], files: Sequence[str] = ()) -> Path:
    """Write the Python files of ``packages`` and the repository files ``files`` into the zip ``zipped``, by their
    paths from the repository root (so that a zip on ``sys.path`` imports them)."""
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as archive:
        for package in packages:
            for path in sorted((REPO_ROOT / package).rglob("*.py")):
                archive.write(path, path.relative_to(REPO_ROOT).as_posix())
        for name in files:
            archive.write(REPO_ROOT / name, name)
    return zipped


@functools.cache
def hive_scratch() -> Path:
    """A folder for the Hive client's per-session scratch (it makes one under /tmp per session and never removes
    it), removed when this process exits."""
    folder = tempfile.mkdtemp(prefix="lakelens-hive-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return Path(folder)


class MetastoreBusyError(InputError, RuntimeError):
    """Another process holds the lake's embedded (Derby) catalog: the job cannot start, and says so in one line."""


@contextmanager
def job_session(cfg: Config) -> Iterator[SparkSession]:
    """The session for one block of a job; stopped after it when this call started it, so that a job that goes
    on without Spark (training) frees the lake's catalog for other processes. A session that already ran (a
    test's, spark-submit's) is left running."""
    started = SparkSession.getActiveSession() is None
    spark = build_session(cfg)
    try:
        yield spark
    finally:
        if started:
            spark.stop()
            if cfg.lake.metastore == "derby":
                _shut_down_derby(cfg)


def local_frame(
    spark: SparkSession, rows: Sequence[Sequence[Any] | Mapping[str, Any]] | pd.DataFrame, schema: StructType | str
) -> DataFrame:
    """A DataFrame of the driver's ``rows`` (tuples in the schema's order, dicts by column name with a missing key
    null, or a pandas DataFrame with the schema's columns) with ``schema`` (a StructType or a DDL string). Naive
    timestamps are taken as UTC, as the lake's are.

    Made as an Arrow table, which Spark takes in the JVM: ``createDataFrame`` of a list (or of an empty pandas
    frame) sends the rows through a Python worker instead, two tasks and about 0.3 s of CPU for one row here
    (BENCHMARKS.md), and a night makes several such frames (its ``runs`` rows, its hot buckets, ...)."""
    struct = schema if isinstance(schema, StructType) else _parse_datatype_string(schema)
    arrow = to_arrow_schema(struct)
    if isinstance(rows, pd.DataFrame):
        table = pa.Table.from_pandas(rows[struct.names], schema=arrow, preserve_index=False)
    else:
        columns = [
            pa.array([row.get(name) if isinstance(row, Mapping) else row[i] for row in rows], type=arrow.field(i).type)
            for i, name in enumerate(struct.names)
        ]
        table = pa.Table.from_arrays(columns, schema=arrow)
    # Spark makes a partition of each Arrow batch (10,000 rows): one partition instead, so that a write of the rows
    # is one task and one file, not a task and a file per 10,000 rows.
    return spark.createDataFrame(table, struct).coalesce(1)


@contextmanager
def session_conf(spark: SparkSession, key: str, value: str) -> Iterator[None]:
    """Set a runtime SQL setting for one block, then put back what was there."""
    before = spark.conf.get(key, None)
    spark.conf.set(key, value)
    try:
        yield
    finally:
        if before is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, before)


def catalog_conf(cfg: Config) -> dict[str, str]:
    """Spark settings that keep the catalog (embedded Derby) and the warehouse under the lake root."""
    conf = {
        "spark.sql.warehouse.dir": warehouse_uri(cfg),
        "spark.sql.catalogImplementation": "hive",
        "spark.hadoop.hive.downloaded.resources.dir": str(hive_scratch() / "resources"),
    }
    if cfg.lake.metastore == "derby":
        root = _local_root(cfg)
        conf["spark.hadoop.javax.jdo.option.ConnectionURL"] = (
            f"jdbc:derby:;databaseName={root / 'metastore_db'};create=true"
        )
        # Embedded Derby admits one process, so the metastore's objects may be cached in it: every query resolves
        # its tables and partitions through the metastore, and the cache cut those calls' time by a fifth.
        conf["spark.hadoop.datanucleus.cache.level2"] = "true"
        conf["spark.hadoop.datanucleus.cache.level2.type"] = "soft"
        # A catalog held by another process stays held for that job's length, not the metastore's 10 retries of
        # 2 s (which made the same command fail or succeed by timing): one attempt, retried once at once. (0 attempts
        # would never open the catalog at all: Hive's ObjectStore makes that many.)
        conf["spark.hadoop.hive.hmshandler.retry.attempts"] = "1"
        conf["spark.hadoop.hive.hmshandler.retry.interval"] = "0ms"
    return conf


def _shut_down_derby(cfg: Config) -> None:
    """Closes the embedded catalog, which outlives ``spark.stop()`` in the still-running JVM and would keep
    every other process out of the lake."""
    url = f"jdbc:derby:;databaseName={_local_root(cfg) / 'metastore_db'};shutdown=true"
    try:
        SparkContext._jvm.java.sql.DriverManager.getConnection(url)
    except Py4JJavaError as exc:
        # Derby reports a clean shutdown as SQLState 08006; anything else is a real failure.
        if "08006" not in str(exc.java_exception.getSQLState()):
            raise


def _local_root(cfg: Config) -> Path:
    return local_lake_root(cfg, "lake.metastore=derby", "use lake.metastore=external on a cluster")


def _driver_java_options(cfg: Config) -> str:
    user = cfg.spark.conf.get("spark.driver.extraJavaOptions", "")
    options = [user, f"-Dlog4j2.configurationFile=file:{CONF_DIR / 'log4j2.properties'}"]
    if cfg.lake.metastore == "derby":
        root = _local_root(cfg)
        options.append(f"-Dderby.system.home={root}")  # derby.log goes beside the metastore
        options.append(f"-Dlakelens.metastore.log={root / 'metastore.log'}")  # the catalog's errors (log4j2.properties)
    return " ".join(o for o in options if o)
