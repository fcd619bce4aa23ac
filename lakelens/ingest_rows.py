"""Ingest's per-batch work on executors, Spark-free: stat files, read them, hash them, check they decode.

Each function maps an iterator of pandas batches to another (the ``mapInPandas`` contract). No row can fail
its batch: whatever goes wrong with one file becomes that row's ``error``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path
from typing import Any

import pandas as pd
from pyspark.sql.types import (
    BinaryType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from lakelens.files import FILE_NOT_FOUND, normalise_uri, read_bytes, stat
from lakelens.imaging import probe

FILES_SCHEMA = StructType(
    [
        StructField("uri", StringType(), False),
        StructField("size", LongType()),
        StructField("modified", TimestampType()),
    ]
)

READ_SCHEMA = StructType(
    [
        *FILES_SCHEMA.fields,
        StructField("image_id", StringType(), False),
        StructField("bytes", BinaryType()),
        StructField("num_bytes", LongType()),
        StructField("width", IntegerType()),
        StructField("height", IntegerType()),
        StructField("format", StringType()),
        StructField("mode", StringType()),
        StructField("frames", IntegerType()),
        StructField("exif_orientation", IntegerType()),
        StructField("error", StringType()),
    ]
)


def image_id_of(data: bytes | None, uri: str) -> str:
    """SHA-256 of the bytes; of ``missing:<uri>`` when nothing could be read, so the row still has a stable id."""
    return hashlib.sha256(data if data is not None else b"missing:" + uri.encode()).hexdigest()


def record(uri: str, data: bytes | None, read_error: str | None, max_pixels: int) -> dict[str, Any]:
    """One READ_SCHEMA row (size and modified left to the caller) for a file's bytes, or why it has none."""
    info = probe(data, max_pixels) if data is not None else None
    return {
        "uri": uri,
        "image_id": image_id_of(data, uri),
        "bytes": data,
        "num_bytes": None if data is None else len(data),
        "width": info and info.width,
        "height": info and info.height,
        "format": info and info.format,
        "mode": info and info.mode,
        "frames": info and info.frames,
        "exif_orientation": info and info.exif_orientation,
        "error": read_error if info is None else info.error,
    }


def stat_files(batches: Iterator[pd.DataFrame], base_dir: str | None) -> Iterator[pd.DataFrame]:
    """(uri) -> FILES_SCHEMA: normalise each uri (relative paths against ``base_dir``) and stat it."""
    for batch in batches:
        uris = [_absolute(u, base_dir) for u in batch["uri"]]
        stats = [stat(u) for u in uris]
        yield pd.DataFrame(
            {"uri": uris, "size": [s.size for s in stats], "modified": [s.modified for s in stats]}
        ).astype({"size": "Int64", "modified": "datetime64[us, UTC]"})


def read_files(
    batches: Iterator[pd.DataFrame], max_bytes: int, max_pixels: int, batch_bytes: int, threads: int
) -> Iterator[pd.DataFrame]:
    """FILES_SCHEMA -> READ_SCHEMA: read each file whole, hash it, probe and decode-check it.

    Output batches hold about ``batch_bytes`` of image bytes whatever the input batch size, since the input
    rows are tiny (a uri) and each output row carries a whole file.
    """

    def one(item: tuple[str, Any, Any]) -> dict[str, Any]:
        uri, size, modified = item
        data, error = read_bytes(uri, max_bytes)
        if error == FILE_NOT_FOUND and size is not None and not pd.isna(size):
            error += " (removed after it was listed)"
        return {**record(uri, data, error, max_pixels), "size": size, "modified": modified}

    items = (row for b in batches for row in zip(b["uri"], b["size"], b["modified"], strict=True))
    yield from _batched_by_bytes(_mapped(one, items, threads), batch_bytes)


def check_bytes(
    batches: Iterator[pd.DataFrame], source: str, max_pixels: int, batch_bytes: int, threads: int
) -> Iterator[pd.DataFrame]:
    """(uri or null, bytes) -> READ_SCHEMA for tables that already hold the bytes; a null uri is named
    ``<source>#sha256=<image_id>`` so that it is stable across runs."""

    def one(item: tuple[Any, Any]) -> dict[str, Any]:
        uri, data = item
        data = None if data is None else bytes(data)
        row = record(uri or "", data, None if data is not None else "no bytes in the source row", max_pixels)
        return {**row, "uri": uri or f"{source}#sha256={row['image_id']}", "size": None, "modified": None}

    items = (row for b in batches for row in zip(b["uri"], b["bytes"], strict=True))
    yield from _batched_by_bytes(_mapped(one, items, threads), batch_bytes)


def _mapped(fn: Callable[[Any], Any], items: Iterable[Any], threads: int) -> Iterator[Any]:
    """``fn`` over ``items`` in order. With several threads, at most a few items per thread are in flight, so
    memory stays bounded by file size; one thread maps in place, since a pool's hand-offs cost about 20 % on
    small local files."""
    if threads == 1:
        yield from map(fn, items)
        return
    iterator = iter(items)
    with ThreadPoolExecutor(threads) as pool:
        while chunk := list(islice(iterator, 4 * threads)):
            yield from pool.map(fn, chunk)


def _batched_by_bytes(rows: Iterator[dict[str, Any]], batch_bytes: int) -> Iterator[pd.DataFrame]:
    pending: list[dict[str, Any]] = []
    size = 0
    for row in rows:
        pending.append(row)
        size += row["num_bytes"] or 0
        if size >= batch_bytes:
            yield _frame(pending)
            pending, size = [], 0
    if pending:
        yield _frame(pending)


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    out = pd.DataFrame(rows, columns=READ_SCHEMA.fieldNames())
    out["modified"] = pd.to_datetime(out["modified"], utc=True)
    # Nullable integer columns: a None among ints must stay null, not become NaN floats.
    ints = ["size", "num_bytes", "width", "height", "frames", "exif_orientation"]
    return out.astype({c: "Int64" for c in ints})


def _absolute(uri: str, base_dir: str | None) -> str:
    uri = uri.strip()
    if base_dir and "://" not in uri and not uri.startswith(("file:", "/", "~")):
        uri = str(Path(base_dir) / uri)
    return normalise_uri(uri)
