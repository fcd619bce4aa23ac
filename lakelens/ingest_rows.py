"""Ingest's per-batch work on executors, Spark-free: stat files, read them, hash them, check they decode.

Each function maps an iterator of pandas batches to another (the ``mapInPandas`` contract). No row can fail
its batch: whatever goes wrong with one file becomes that row's ``error``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
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

from lakelens.files import normalise_uri, read_bytes, stat
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

# Threads overlap file I/O (remote stores are latency-bound); Pillow releases the GIL while decoding.
READ_THREADS = 4


def image_id_of(data: bytes | None, uri: str) -> str:
    """SHA-256 of the bytes; of ``missing:<uri>`` when nothing could be read, so the row still has a stable id."""
    return hashlib.sha256(data if data is not None else b"missing:" + uri.encode()).hexdigest()


def record(uri: str, data: bytes | None, read_error: str | None, max_pixels: int) -> dict[str, Any]:
    """One READ_SCHEMA row (less size and modified) for a file's bytes, or for the reason it has none."""
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


def read_files(batches: Iterator[pd.DataFrame], max_bytes: int, max_pixels: int) -> Iterator[pd.DataFrame]:
    """FILES_SCHEMA -> READ_SCHEMA: read each file whole, hash it, probe and decode-check it."""

    def one(uri: str) -> dict[str, Any]:
        data, error = read_bytes(uri, max_bytes)
        return record(uri, data, error, max_pixels)

    with ThreadPoolExecutor(READ_THREADS) as pool:
        for batch in batches:
            rows = list(pool.map(one, batch["uri"]))
            yield _frame(batch[["uri", "size", "modified"]], rows)


def check_bytes(batches: Iterator[pd.DataFrame], source: str, max_pixels: int) -> Iterator[pd.DataFrame]:
    """(uri or null, bytes) -> READ_SCHEMA for tables that already hold the bytes; a null uri is named
    ``<source>#sha256=<image_id>`` so that it is stable across runs."""
    with ThreadPoolExecutor(READ_THREADS) as pool:
        for batch in batches:

            def one(item: tuple[Any, Any]) -> dict[str, Any]:
                uri, data = item
                data = None if data is None else bytes(data)
                row = record(uri or "", data, None if data is not None else "no bytes in the source row", max_pixels)
                row["uri"] = uri or f"{source}#sha256={row['image_id']}"
                return row

            rows = list(pool.map(one, zip(batch["uri"], batch["bytes"], strict=True)))
            files = pd.DataFrame({"uri": [r["uri"] for r in rows], "size": None, "modified": None})
            yield _frame(files, rows)


def _frame(files: pd.DataFrame, rows: list[dict[str, Any]]) -> pd.DataFrame:
    out = pd.DataFrame(rows, columns=[f.name for f in READ_SCHEMA.fields if f.name not in ("size", "modified")])
    out.insert(1, "size", files["size"].to_numpy())
    out.insert(2, "modified", pd.to_datetime(files["modified"], utc=True).to_numpy())
    # Nullable integer columns: a None among ints must stay null, not become NaN floats.
    ints = ["size", "num_bytes", "width", "height", "frames", "exif_orientation"]
    return out.astype({c: "Int64" for c in ints})


def _absolute(uri: str, base_dir: str | None) -> str:
    uri = uri.strip()
    if base_dir and "://" not in uri and not uri.startswith(("file:", "/", "~")):
        uri = str(Path(base_dir) / uri)
    return normalise_uri(uri)
