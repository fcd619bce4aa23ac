"""Ingest sources: what ``--source`` is (a folder, a list of paths, a Parquet table) and the files it names.

The driver lists folders; lists and path tables are stat-ed on the executors.
"""

from __future__ import annotations

import argparse
import math
import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakelens.config import Config
from lakelens.errors import InputError, SourceNotFoundError
from lakelens.files import Listing, folder_entries, list_folder, normalise_uri, path_kind, resolve
from lakelens.ingest_rows import FILES_SCHEMA, stat_files
from lakelens.pyworker import worker_task

SOURCE_FORMATS = ("auto", "folder", "list", "parquet")
LIST_SUFFIXES = (".txt", ".lst", ".list")
BYTES_COLUMNS = ("bytes", "content", "image", "data")  # a Parquet table's image bytes, unless --bytes-column says
URI_COLUMNS = ("uri", "path")
_PARTITION = re.compile(r"^[^=/]+=[^/]*$")  # a Hive-style partition folder: key=value


class SourceError(InputError):
    """``--source`` cannot be ingested as given; the message says what to give instead."""


@dataclass(frozen=True)
class Source:
    """What ``--source`` is, decided before Spark starts: ``folder``, ``list`` or ``parquet``; for a Parquet table,
    the column of image bytes (None: the table names files in ``uri_column``)."""

    uri: str
    format: str
    bytes_column: str | None = None
    uri_column: str | None = None


def add_source_options(parser: argparse.ArgumentParser) -> None:
    """``--source``, ``--format`` and ``--bytes-column``: the options of every job that ingests."""
    parser.add_argument(
        "--source", required=True, help="a folder of images, a .txt list of paths/URIs, or a Parquet table"
    )
    parser.add_argument(
        "--format",
        default="auto",
        choices=SOURCE_FORMATS,
        help="what --source is (default auto: a .parquet file, or a folder of nothing but Parquet files and partition "
        "folders, is a table; a .txt/.lst/.list file is a list; another folder is a folder of images)",
    )
    parser.add_argument(
        "--bytes-column",
        help=f"a Parquet table's column of image bytes (default: the binary column named {', '.join(BYTES_COLUMNS)}; "
        f"a table without one names files in a {' or '.join(URI_COLUMNS)} column)",
    )


def open_source(source: str, fmt: str = "auto", bytes_column: str | None = None) -> Source:
    """The source ``source`` names, checked: it exists, it is what ``fmt`` says (``auto``: see
    :func:`detect_format`), and a Parquet table has a column of image bytes or of file uris.

    Raises:
        SourceNotFoundError: nothing at ``source``.
        SourceError: an ambiguous folder, an unknown kind of file, a table without a usable column.
    """
    if fmt not in SOURCE_FORMATS:
        raise SourceError(f"unknown source format {fmt!r}: give one of {', '.join(SOURCE_FORMATS)}")
    kind = path_kind(source)
    if kind == "missing":
        raise SourceNotFoundError(f"source not found: {source}")
    fmt = detect_format(source) if fmt == "auto" else fmt
    if fmt != "parquet" and bytes_column:
        raise SourceError(f"--bytes-column is for Parquet tables, and {source} is read as a {fmt}")
    if fmt == "folder" and kind != "folder":
        raise SourceError(f"--format folder needs a folder, and {source} is a file")
    if fmt == "list" and kind != "file":
        raise SourceError(f"--format list needs a text file of paths, and {source} is a folder")
    if fmt != "parquet":
        return Source(source, fmt)
    schema = parquet_schema(source)
    binary = [f.name for f in schema if pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type)]
    uri_col = next((c for c in URI_COLUMNS if c in schema.names), None)
    if bytes_column:
        if bytes_column not in binary:
            raise SourceError(
                f"--bytes-column {bytes_column}: {source} has no binary column of that name (binary columns: "
                f"{', '.join(binary) or 'none'})"
            )
        return Source(source, fmt, bytes_column, uri_col)
    documented = next((c for c in BYTES_COLUMNS if c in binary), None)
    if documented or uri_col:
        return Source(source, fmt, documented, uri_col)
    if binary:
        raise SourceError(
            f"the Parquet table {source} has binary columns ({', '.join(binary)}) but none named "
            f"{', '.join(BYTES_COLUMNS)}: name the column of image bytes with --bytes-column"
        )
    raise SourceError(
        f"the Parquet table {source} has neither image bytes (a binary column named {', '.join(BYTES_COLUMNS)}) "
        f"nor file paths (a column named {' or '.join(URI_COLUMNS)}); its columns: {', '.join(schema.names)}"
    )


def detect_format(source: str) -> str:
    """``folder``, ``list`` or ``parquet``, from what an existing ``source`` is.

    A file is a Parquet table (``.parquet``) or a list of paths (``.txt``, ``.lst``, ``.list``). A folder is a
    Parquet table only when it plainly is one: nothing but Parquet files, ``_SUCCESS`` and other names starting
    with ``_`` or ``.``, and ``key=value`` partition folders holding Parquet files; a folder with no Parquet files
    is a folder of images; one holding both is refused (``--format`` says which it is).
    """
    if path_kind(source) == "file":
        if source.lower().endswith(".parquet"):
            return "parquet"
        if source.lower().endswith(LIST_SUFFIXES):
            return "list"
        raise SourceError(
            f"cannot tell what {source} is: give a folder, a .txt list of paths or a .parquet table, or say which "
            "with --format list or --format parquet"
        )
    marks, others, partitions = [], [], []
    for name, kind in folder_entries(source):
        if kind == "file" and (name.lower().endswith(".parquet") or name == "_SUCCESS"):
            marks.append(name)
        elif kind == "folder" and _PARTITION.match(name):
            partitions.append(name)
        elif not name.startswith(("_", ".")):
            others.append(name + ("/" if kind == "folder" else ""))
    if partitions:
        inside, strays = _partition_files(source, partitions)
        marks += inside
        others += strays
    if not marks:
        return "folder"
    if not others:
        return "parquet"
    raise SourceError(
        f"cannot tell what {source} is: it holds Parquet files ({_some(marks)}) and other files or folders "
        f"({_some(others)}); give --format folder to ingest the images in it (its Parquet files are not images) "
        "or --format parquet to read it as a table"
    )


def _partition_files(source: str, partitions: list[str]) -> tuple[list[str], list[str]]:
    """The Parquet files and the other files under a folder's partition folders (names from the folder)."""
    fs, path = resolve(normalise_uri(source))
    parquet, other = [], []
    for folder in partitions:
        for info in fs.get_file_info(pafs.FileSelector(f"{path}/{folder}", recursive=True)):
            relative = info.path[len(path) + 1 :]
            if info.type != pafs.FileType.File or any(p.startswith(("_", ".")) for p in relative.split("/")):
                continue
            (parquet if info.base_name.lower().endswith(".parquet") else other).append(relative)
    return parquet, other


def _some(names: list[str], n: int = 3) -> str:
    shown = ", ".join(sorted(names)[:n])
    return shown + (f" and {len(names) - n} more" if len(names) > n else "")


def parquet_schema(source: str) -> pa.Schema:
    """The Arrow schema of a Parquet file or dataset folder, read from its footers (no Spark).

    Raises:
        SourceError: it cannot be read as Parquet.
    """
    fs, path = resolve(normalise_uri(source))
    try:
        return ds.dataset(path, filesystem=fs, format="parquet", partitioning="hive").schema
    except (OSError, pa.ArrowException) as exc:
        raise SourceError(f"cannot read {source} as a Parquet table: {str(exc).strip().splitlines()[0]}") from exc


def extract_candidates(spark: SparkSession, cfg: Config, source: Source) -> tuple[DataFrame, int, Listing | None]:
    """The files a source names, as FILES_SCHEMA rows (uri, size, modified), how many there are, and for a folder
    what its listing found."""
    if source.format == "folder":
        listing = list_folder(source.uri, cfg.ingest.patterns)
        files = listing.files
        frame = pd.DataFrame(
            {"uri": [f.uri for f in files], "size": [f.size for f in files], "modified": [f.modified for f in files]}
        ).astype({"size": "int64", "modified": "datetime64[us, UTC]"})
        # From pandas, Spark takes the listing as Arrow in the JVM, with no Python worker round trip.
        return spark.createDataFrame(frame, FILES_SCHEMA), len(files), listing
    if source.format == "list":
        uris = (
            spark.read.text(normalise_uri(source.uri))
            .select(F.trim(F.col("value")).alias("uri"))
            .filter((F.col("uri") != "") & ~F.col("uri").startswith("#"))
        )
        return *_stat(uris, str(Path(resolve(source.uri)[1]).parent), cfg), None
    paths = spark.read.parquet(normalise_uri(source.uri))
    uris = paths.select(F.col(source.uri_column).cast("string").alias("uri")).filter(F.col("uri").isNotNull())
    return *_stat(uris, None, cfg), None


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
