"""Ingest sources: what ``--source`` is (a folder, a list of paths, a Parquet table) and the files it names.

The driver lists folders; lists and path tables are stat-ed on the executors.
"""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path

import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakelens.config import Config
from lakelens.files import list_files, normalise_uri, path_kind, resolve, top_level_names
from lakelens.ingest_rows import FILES_SCHEMA, stat_files
from lakelens.pyworker import worker_task

SOURCE_FORMATS = ("auto", "folder", "list", "parquet")
LIST_SUFFIXES = (".txt", ".lst", ".list")
BYTES_COLUMNS = ("bytes", "content", "image", "data")  # preferred names; else the first binary column
URI_COLUMNS = ("uri", "path")


def detect_format(source: str) -> str:
    """folder, list or parquet, from what ``source`` is: a folder holding ``*.parquet`` or ``_SUCCESS`` at its top
    level is a Parquet table; ``--format`` overrides this guess."""
    kind = path_kind(source)
    if kind == "missing":
        raise FileNotFoundError(f"source not found: {source}")
    if kind == "file":
        if source.endswith(".parquet"):
            return "parquet"
        if source.lower().endswith(LIST_SUFFIXES):
            return "list"
        raise ValueError(f"cannot tell what {source} is: give a folder, a .txt list of paths, or a .parquet table")
    names = top_level_names(source)
    return "parquet" if any(n.endswith(".parquet") or n == "_SUCCESS" for n in names) else "folder"


def extract_candidates(spark: SparkSession, cfg: Config, source: str, fmt: str) -> tuple[DataFrame, int]:
    """The files a source names, as FILES_SCHEMA rows (uri, size, modified), and how many there are."""
    if fmt == "folder":
        files = list_files(source, cfg.ingest.patterns)
        listing = pd.DataFrame(
            {"uri": [f.uri for f in files], "size": [f.size for f in files], "modified": [f.modified for f in files]}
        ).astype({"size": "int64", "modified": "datetime64[us, UTC]"})
        # From pandas, Spark takes the listing as Arrow in the JVM, with no Python worker round trip.
        return spark.createDataFrame(listing, FILES_SCHEMA), len(files)
    if fmt == "list":
        uris = (
            spark.read.text(normalise_uri(source))
            .select(F.trim(F.col("value")).alias("uri"))
            .filter((F.col("uri") != "") & ~F.col("uri").startswith("#"))
        )
        return _stat(uris, str(Path(resolve(source)[1]).parent), cfg)
    paths = spark.read.parquet(normalise_uri(source))
    column = uri_column(paths)
    if column is None:
        raise ValueError(f"the Parquet source needs a binary column or a uri/path column; it has {paths.columns}")
    uris = paths.select(F.col(column).cast("string").alias("uri")).filter(F.col("uri").isNotNull())
    return _stat(uris, None, cfg)


def _stat(uris: DataFrame, base_dir: str | None, cfg: Config) -> tuple[DataFrame, int]:
    """Stat listed uris on the executors; duplicates (after making paths absolute) count once."""
    parts = read_partitions(uris.sparkSession, uris.count(), cfg)
    stats = (
        uris.repartition(parts)
        .mapInPandas(worker_task(partial(stat_files, base_dir=base_dir)), FILES_SCHEMA)
        .dropDuplicates(["uri"])
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    return stats, stats.count()


def read_partitions(spark: SparkSession, n: int, cfg: Config) -> int:
    """Read tasks of about ``files_per_partition`` files, as a multiple of the cores so none idles at the end.

    Few large tasks: each task costs a Python worker round trip, which for small images outweighs the work.
    """
    cores = spark.sparkContext.defaultParallelism
    tasks = max(cores, math.ceil(n / cfg.ingest.files_per_partition))
    return math.ceil(tasks / cores) * cores


def binary_columns(df: DataFrame) -> list[str]:
    return [f.name for f in df.schema.fields if f.dataType.typeName() == "binary"]


def uri_column(df: DataFrame) -> str | None:
    return next((c for c in URI_COLUMNS if c in df.columns), None)
