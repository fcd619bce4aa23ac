"""Lake I/O: where the lake lives, and creating, reading and appending its tables by their declared schemas."""

from __future__ import annotations

import logging
import re
import threading
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType
from pyspark.util import inheritable_thread_target

from lakelens.config import Config
from lakelens.schemas import TableSpec

log = logging.getLogger("lakelens.lake")
GENERATION = "gen"  # a partition's folder of rows written whole by replace_partition: <partition>/gen=<time>/
# Tables checked in this application: whether their columns are in the declared order (read_table selects them
# otherwise; tables made by lakelens are).
_ENSURED: dict[tuple[str, str, str], bool] = {}
# One writer per table at a time within an application: stages running side by side (jobs.nightly) may write the
# same table, and two Spark jobs committing into one folder would share its _temporary folder.
_TABLE_LOCKS: dict[tuple[str, str, str], threading.RLock] = {}
_TABLE_LOCKS_GUARD = threading.Lock()
STAGING_TIME = "%Y%m%dT%H%M%S%f"
STALE_STAGING = timedelta(days=1)  # a staging folder this old was left by a job that was killed


class SchemaMismatchError(ValueError):
    """A DataFrame or an existing table does not have the declared schema of a lake table."""


def lake_uri(cfg: Config) -> str:
    """The lake root as a URI: ``file:/abs/path`` for a local folder, else as configured (``s3a://...``)."""
    root = cfg.lake.root.rstrip("/")
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", root) and not root.startswith("file:"):
        return root
    return "file:" + str(Path(root.removeprefix("file:")).expanduser().resolve())


def local_lake_root(cfg: Config, needed_by: str, remedy: str) -> Path:
    """The lake root as a local folder (created if missing), for what cannot live on a remote filesystem."""
    uri = lake_uri(cfg)
    if not uri.startswith("file:"):
        raise ValueError(f"{needed_by} needs a local lake root, got {uri}; {remedy}")
    root = Path(uri.removeprefix("file:"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def warehouse_uri(cfg: Config) -> str:
    return f"{lake_uri(cfg)}/warehouse"


def database_location(cfg: Config) -> str:
    return f"{warehouse_uri(cfg)}/{cfg.lake.database}.db"


def ensure_database(spark: SparkSession, cfg: Config) -> None:
    """Create the lake database, located under the lake root, if it does not exist."""
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {cfg.lake.database} LOCATION '{database_location(cfg)}'")


def qualified(cfg: Config, spec: TableSpec) -> str:
    """``database.table`` for a lake table."""
    return f"{cfg.lake.database}.{spec.name}"


def ensure_table(spark: SparkSession, cfg: Config, spec: TableSpec) -> None:
    """Create the table with its declared schema if it is missing; fail loudly if it exists with another.

    Checked once per Spark application and table: catalog round trips to the metastore are slow.
    """
    name = qualified(cfg, spec)
    key = _ensured_key(spark, cfg, name)
    if key in _ENSURED:
        return
    with _writing(key):
        ensure_database(spark, cfg)
        if spark.catalog.tableExists(name):
            schema = spark.table(name).schema
            _check_same(spec, schema, f"existing table {name}", strict=True)
            _ENSURED[key] = schema.names == spec.columns
            return
        columns = ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in spec.schema.fields)
        partitioned = f" PARTITIONED BY ({', '.join(spec.partition_by)})" if spec.partition_by else ""
        comment = spec.description.replace("'", "")
        spark.sql(f"CREATE TABLE IF NOT EXISTS {name} ({columns}) USING parquet{partitioned} COMMENT '{comment}'")
        _ENSURED[key] = True


def _ensured_key(spark: SparkSession, cfg: Config, name: str) -> tuple[str, str, str]:
    return spark.sparkContext.applicationId, lake_uri(cfg), name


def _writing(key: tuple[str, str, str]) -> threading.RLock:
    """The lock that a thread holds while it creates or writes the table ``key``."""
    with _TABLE_LOCKS_GUARD:
        return _TABLE_LOCKS.setdefault(key, threading.RLock())


def _table_lock(df: DataFrame, cfg: Config, spec: TableSpec) -> threading.RLock:
    return _writing(_ensured_key(df.sparkSession, cfg, qualified(cfg, spec)))


def read_table(spark: SparkSession, cfg: Config, spec: TableSpec) -> DataFrame:
    """The table as a DataFrame with exactly the declared columns (created empty if it does not exist yet)."""
    ensure_table(spark, cfg, spec)
    table = spark.table(qualified(cfg, spec))
    # A select that changes nothing still costs a round trip per column and an analysis of the plan.
    return table if _ENSURED[_ensured_key(spark, cfg, qualified(cfg, spec))] else table.select(*spec.columns)


def table_location(spark: SparkSession, name: str) -> str:
    """Where a catalog table's files are (``file:/...`` locally), for readers outside Spark such as petastorm."""
    rows = spark.sql(f"DESCRIBE TABLE EXTENDED {name}").filter(F.col("col_name") == "Location").collect()
    if not rows:
        raise ValueError(f"table {name} has no location in the catalog")
    return rows[0]["data_type"]


def has_rows(spark: SparkSession, cfg: Config, spec: TableSpec) -> bool:
    """Whether a lake table holds any row. Partitioned tables answer from the catalog, without a Spark job
    (lakelens never writes an empty partition)."""
    ensure_table(spark, cfg, spec)
    if spec.partition_by:
        return bool(spark.sql(f"SHOW PARTITIONS {qualified(cfg, spec)}").take(1))
    return not spark.table(qualified(cfg, spec)).isEmpty()


def conform(df: DataFrame, spec: TableSpec) -> DataFrame:
    """``df`` selected to the table's columns in order; raises if a column is missing or of another type."""
    schema = df.schema
    _check_same(spec, schema, "DataFrame", strict=False)
    return df if schema.names == spec.columns else df.select(*spec.columns)


def append(df: DataFrame, cfg: Config, spec: TableSpec) -> None:
    """Append rows to a lake table (a Spark job commit: readers see all new files or none)."""
    ensure_table(spark=df.sparkSession, cfg=cfg, spec=spec)
    with _table_lock(df, cfg, spec):
        conform(df, spec).write.insertInto(qualified(cfg, spec), overwrite=False)


def append_each(writes: Sequence[tuple[DataFrame, TableSpec]], cfg: Config) -> None:
    """:func:`append` each ``(rows, table)`` to its table, side by side: an append of a few rows is mostly a commit
    and a catalog round trip, so several wait together rather than in turn. Every append is tried; once all have
    ended, the error of the first that failed (in ``writes``' order) is raised."""
    if not writes:
        return
    spark = writes[0][0].sparkSession

    def one(write: tuple[DataFrame, TableSpec]) -> None:
        append(write[0], cfg, write[1])

    with ThreadPoolExecutor(max_workers=len(writes), thread_name_prefix="lake-append") as pool:
        # The caller's Spark job group and scheduler pool go with each append into its thread.
        futures = [pool.submit(inheritable_thread_target(spark)(one), write) for write in writes]
    for error in (f.exception() for f in futures):
        if error is not None:
            raise error


def replace(df: DataFrame, cfg: Config, spec: TableSpec) -> None:
    """Replace a lake table's rows (for tables rebuilt whole from a source, so a re-run is idempotent).

    A table made by an older schema is dropped and made again: every row is replaced anyway.
    """
    spark, name = df.sparkSession, qualified(cfg, spec)
    with _table_lock(df, cfg, spec):
        if spark.catalog.tableExists(name):
            try:
                _check_same(spec, spark.table(name).schema, f"existing table {name}", strict=True)
            except SchemaMismatchError as exc:
                log.warning("%s; its rows are all replaced, so it is made again with the declared schema", exc)
                spark.sql(f"DROP TABLE {name}")
                _ENSURED.pop(_ensured_key(spark, cfg, name), None)
        ensure_table(spark=spark, cfg=cfg, spec=spec)
        conform(df, spec).write.insertInto(qualified(cfg, spec), overwrite=True)


def _check_same(spec: TableSpec, actual: StructType, what: str, strict: bool) -> None:
    """Same column names and types (nullability aside); ``strict`` also refuses extra columns."""
    want = {f.name: f.dataType for f in spec.schema.fields}
    got = {f.name: f.dataType for f in actual.fields}
    problems = [f"missing column {c}" for c in want if c not in got]
    problems += [
        f"column {c} is {got[c].simpleString()}, declared {t.simpleString()}"
        for c, t in want.items()
        if c in got and got[c] != t
    ]
    if strict:
        problems += [f"unexpected column {c}" for c in got if c not in want]
    if problems:
        raise SchemaMismatchError(f"{what} does not match the schema of {spec.name}: {'; '.join(problems)}")


def registry_root(cfg: Config) -> Path:
    """The model registry folder: ``models.registry``, else ``<lake root>/models`` (a local lake)."""
    if cfg.models.registry:
        return Path(cfg.models.registry)
    return local_lake_root(cfg, "the model registry", "set models.registry to a local folder") / "models"


def replace_partition(df: DataFrame, cfg: Config, spec: TableSpec, **values: str) -> None:
    """Replace one partition's rows (``values`` names every partition column) so that readers see the old rows or
    the new ones, never none or a mix, and a crash part-way leaves the old rows in place.

    The new rows are written to a folder of their own inside the partition's folder (``gen=<time>``); one catalog
    call then points the partition at it, and the old files are removed after.
    """
    spark = df.sparkSession
    ensure_table(spark, cfg, spec)
    if set(values) != set(spec.partition_by):
        raise ValueError(f"table {spec.name} is partitioned by {spec.partition_by}, got {sorted(values)}")
    with _table_lock(df, cfg, spec):
        name = qualified(cfg, spec)
        folder = "/".join(f"{column}={values[column]}" for column in spec.partition_by)
        target = f"{table_location(spark, name)}/{folder}"
        fresh = f"{target}/{GENERATION}={datetime.now(UTC):%Y%m%dT%H%M%S%f}"
        conform(df, spec).drop(*spec.partition_by).write.parquet(fresh)
        where = ", ".join(f"{column} = '{value}'" for column, value in values.items())
        old = _partition_location(spark, name, where)
        if old is None:
            spark.sql(f"ALTER TABLE {name} ADD PARTITION ({where}) LOCATION '{fresh}'")
        else:
            spark.sql(f"ALTER TABLE {name} PARTITION ({where}) SET LOCATION '{fresh}'")
        spark.catalog.refreshTable(name)
        if old is not None:
            _remove_old(spark, old, keep_folders=old.rstrip("/") == target)


def _partition_location(spark: SparkSession, name: str, where: str) -> str | None:
    if not spark.sql(f"SHOW PARTITIONS {name} PARTITION ({where})").take(1):
        return None
    rows = spark.sql(f"DESCRIBE FORMATTED {name} PARTITION ({where})").where(F.col("col_name") == "Location")
    return rows.first()["data_type"]


@contextmanager
def staged(df: DataFrame, cfg: Config, label: str) -> Iterator[DataFrame]:
    """``df`` computed once into a staging folder of the lake (``_staging/`` beside the tables) and read back, for
    results that several writes then use: unlike a cache, which Spark drops when a table it was computed from is
    written, the staged rows are never computed again, and they outlive a lost executor. The folder is removed
    when the block ends; folders of ``label`` over a day old (left by a killed job) are removed first."""
    spark = df.sparkSession
    now = datetime.now(UTC)
    staging = f"{database_location(cfg)}/_staging"
    _remove_stale(spark, staging, label, now - STALE_STAGING)
    path = f"{staging}/{label}-{now:{STAGING_TIME}}-{uuid.uuid4().hex[:6]}"
    try:
        df.write.parquet(path)
        yield spark.read.parquet(path)
    finally:
        _hadoop_delete(spark, path)


def _remove_stale(spark: SparkSession, staging: str, label: str, before: datetime) -> None:
    fs, folder = _hadoop_path(spark, staging)
    if not fs.exists(folder):
        return
    for status in fs.listStatus(folder):
        name = status.getPath().getName()
        stamp = re.fullmatch(rf"{re.escape(label)}-(\d{{8}}T\d{{12}})-[0-9a-f]{{6}}", name)
        if stamp and datetime.strptime(stamp[1], STAGING_TIME).replace(tzinfo=UTC) < before:
            log.warning("removing %s, left in the lake's staging folder by a job that did not finish", name)
            fs.delete(status.getPath(), True)


def _hadoop_delete(spark: SparkSession, location: str) -> None:
    fs, path = _hadoop_path(spark, location)
    fs.delete(path, True)


def _hadoop_path(spark: SparkSession, location: str) -> tuple[Any, Any]:
    """The Hadoop FileSystem holding ``location`` (any scheme the cluster reads) and its Path, through the JVM."""
    path = spark.sparkContext._jvm.org.apache.hadoop.fs.Path(location)
    return path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), path


def _remove_old(spark: SparkSession, location: str, keep_folders: bool) -> None:
    """Delete a partition's former folder; its files only where it is the partition's own folder, which holds the
    new generation's folder too."""
    fs, path = _hadoop_path(spark, location)
    if not fs.exists(path):
        return
    if not keep_folders:
        fs.delete(path, True)
        return
    for status in fs.listStatus(path):
        if status.isFile():
            fs.delete(status.getPath(), False)


def table_dataset(cfg: Config, spec: TableSpec) -> ds.Dataset | None:
    """A lake table's Parquet files as a ``pyarrow.dataset`` (hive partitions as columns), for quick reads
    without a Spark session (jobs.query). Its files are where the catalog keeps them: under the database folder;
    of a partition that ``replace_partition`` rewrote, only the newest generation's. Returns None when the table
    has no files yet."""
    filesystem, path = pafs.FileSystem.from_uri(f"{database_location(cfg)}/{spec.name}")
    if filesystem.get_file_info(path).type == pafs.FileType.NotFound:
        return None
    found = filesystem.get_file_info(pafs.FileSelector(path, recursive=True))
    files = [f.path for f in found if f.type == pafs.FileType.File and f.path.endswith(".parquet")]
    files = [f for f in files if not any(part.startswith((".", "_")) for part in f[len(path) :].split("/"))]
    schema = pa.schema([pa.field(name, pa.string()) for name in spec.partition_by])
    return ds.dataset(
        _current_generation(files), filesystem=filesystem, format="parquet",
        partitioning=ds.partitioning(schema, flavor="hive"), partition_base_dir=path,
    )  # fmt: skip


def _current_generation(files: list[str]) -> list[str]:
    """Of each partition folder, the files of its newest ``gen=`` folder if it has one, else its own files."""
    marker = f"/{GENERATION}="
    newest: dict[str, str] = {}
    for f in files:
        if marker in f:
            folder, _, rest = f.rpartition(marker)
            newest[folder] = max(newest.get(folder, ""), rest.split("/")[0])
    kept = []
    for f in files:
        if marker in f:
            folder, _, rest = f.rpartition(marker)
            if rest.split("/")[0] == newest[folder]:
                kept.append(f)
        elif f.rpartition("/")[0] not in newest:
            kept.append(f)
    return kept
