"""Files by URI on any filesystem pyarrow reaches: local (``file:/...`` or a plain path), S3, HDFS, GCS.

Local files are named ``file:/abs/path`` in the lake, as Hadoop names them. Listing, stat and reads never raise
for a single file: a missing or unreadable file comes back with an error string instead.
"""

from __future__ import annotations

import fnmatch
import functools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.fs as pafs

_HADOOP_SCHEMES = {"s3a": "s3", "s3n": "s3", "gcs": "gs"}


@dataclass(frozen=True)
class FileStat:
    uri: str
    size: int | None = None
    modified: datetime | None = None
    error: str | None = None


def normalise_uri(path_or_uri: str) -> str:
    """``file:/abs/path`` for local paths (relative ones resolved against the working folder), else unchanged."""
    if "://" in path_or_uri and not path_or_uri.startswith("file:"):
        return path_or_uri
    local = path_or_uri.removeprefix("file:")
    if local.startswith("//"):  # file:///abs -> /abs
        local = local[2:]
    return "file:" + str(Path(local).expanduser().resolve())


def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem and the path on it for a URI."""
    if uri.startswith("file:/") and not uri.startswith("file://"):
        # Already the lake's canonical form: skip normalising, whose realpath costs syscalls on every read.
        return _local(), uri.removeprefix("file:")
    uri = normalise_uri(uri)
    if uri.startswith("file:"):
        return _local(), uri.removeprefix("file:")
    scheme, rest = uri.split("://", 1)
    return _remote(_HADOOP_SCHEMES.get(scheme, scheme), rest.split("/", 1)[0]), rest


@functools.cache
def _local() -> pafs.FileSystem:
    return pafs.LocalFileSystem()


@functools.cache
def _remote(scheme: str, authority: str) -> pafs.FileSystem:
    fs, _ = pafs.FileSystem.from_uri(f"{scheme}://{authority}/")
    return fs


def _uri_of(base_uri: str, path: str) -> str:
    if base_uri.startswith("file:"):
        return "file:" + path
    return f"{base_uri.split('://', 1)[0]}://{path}"


def matches(name: str, patterns: Iterable[str]) -> bool:
    """Case-insensitive glob match of a file's base name."""
    lower = name.lower()
    return any(fnmatch.fnmatchcase(lower, p.lower()) for p in patterns)


def list_files(root: str, patterns: Iterable[str]) -> list[FileStat]:
    """Every file under ``root`` (recursively) whose base name matches one of ``patterns``, sorted by uri.

    Raises:
        FileNotFoundError: ``root`` does not exist or is not a folder.
    """
    root_uri = normalise_uri(root)
    fs, path = resolve(root_uri)
    if fs.get_file_info(path).type != pafs.FileType.Directory:
        raise FileNotFoundError(f"source folder not found: {root}")
    patterns = list(patterns)
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=False))
    found = [
        FileStat(_uri_of(root_uri, info.path), info.size, _utc(info.mtime))
        for info in infos
        if info.type == pafs.FileType.File and matches(info.base_name, patterns)
    ]
    return sorted(found, key=lambda s: s.uri)


def path_kind(uri: str) -> str:
    """``file``, ``folder`` or ``missing``."""
    fs, path = resolve(uri)
    kind = fs.get_file_info(path).type
    return {pafs.FileType.File: "file", pafs.FileType.Directory: "folder"}.get(kind, "missing")


def top_level_names(uri: str) -> list[str]:
    """Base names of the entries directly inside a folder."""
    fs, path = resolve(uri)
    return [info.base_name for info in fs.get_file_info(pafs.FileSelector(path))]


def stat(uri: str) -> FileStat:
    """Size and modification time of one file, or an error when it is missing or not a file."""
    try:
        fs, path = resolve(uri)
        info = fs.get_file_info(path)
    except Exception as exc:
        return FileStat(uri, error=f"cannot stat: {exc}")
    if info.type == pafs.FileType.NotFound:
        return FileStat(uri, error="file not found")
    if info.type != pafs.FileType.File:
        return FileStat(uri, error=f"not a regular file ({info.type.name})")
    return FileStat(uri, info.size, _utc(info.mtime))


def read_bytes(uri: str, max_bytes: int) -> tuple[bytes | None, str | None]:
    """The whole file, or (None, why) when it is missing, unreadable or larger than ``max_bytes``."""
    try:
        fs, path = resolve(uri)
        with fs.open_input_file(path) as f:
            size = f.size()
            if size > max_bytes:
                return None, f"file too large: {size} bytes > ingest.max_bytes {max_bytes}"
            return f.read(), None
    except FileNotFoundError:
        return None, "file not found (it may have been removed after listing)"
    except Exception as exc:
        return None, f"cannot read file: {str(exc).strip() or type(exc).__name__}"


def _utc(mtime: datetime | None) -> datetime | None:
    if mtime is None:
        return None
    # Spark stores timestamps as UTC instants; a naive value would shift with the session time zone.
    return mtime if mtime.tzinfo else mtime.replace(tzinfo=UTC)
