"""Files by URI on any filesystem pyarrow reaches: local (``file:/...`` or a plain path), S3, HDFS, GCS.

Local files are named ``file:/abs/path`` in the lake, as Hadoop names them. Listing, stat and reads never raise
for a single file: a missing or unreadable file comes back with an error string instead.
"""

from __future__ import annotations

import fnmatch
import functools
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.fs as pafs

_HADOOP_SCHEMES = {"s3a": "s3", "s3n": "s3", "gcs": "gs"}
FILE_NOT_FOUND = "file not found"


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
    try:
        return "file:" + str(Path(local).expanduser().resolve())
    except RuntimeError:  # a symbolic link loop: the path as written, whose read then gives its row an error
        return "file:" + os.path.abspath(os.path.expanduser(local))


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


@dataclass(frozen=True)
class Listing:
    """What listing a folder found: the matching files (one per real file, sorted by uri), the files that did not
    match the patterns, and the folders not entered: links to a folder already listed (a symbolic link loop, or a
    second path to it) and folders that could not be read."""

    files: list[FileStat]
    unmatched: int = 0
    repeated_folders: int = 0
    unreadable_folders: int = 0


def list_files(root: str, patterns: Iterable[str]) -> list[FileStat]:
    """Every file under ``root`` (recursively) whose base name matches one of ``patterns``, sorted by uri (see
    :func:`list_folder`)."""
    return list_folder(root, patterns).files


def list_folder(root: str, patterns: Iterable[str]) -> Listing:
    """The files under ``root`` (recursively) whose base name matches one of ``patterns``, sorted by uri.

    A local folder is walked with symbolic links resolved: each real folder is entered once (a link back to a
    folder already listed, a loop, is counted and not followed), and each real file is listed once, under its
    resolved path, whether its own name or that of a link to it matches.

    Raises:
        FileNotFoundError: ``root`` does not exist or is not a folder.
    """
    root_uri = normalise_uri(root)
    fs, path = resolve(root_uri)
    if fs.get_file_info(path).type != pafs.FileType.Directory:
        raise FileNotFoundError(f"source folder not found: {root}")
    patterns = list(patterns)
    if root_uri.startswith("file:"):
        return _walk_local(Path(path), patterns)
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=False))
    files = [info for info in infos if info.type == pafs.FileType.File]
    found = [
        FileStat(_uri_of(root_uri, i.path), i.size, _utc(i.mtime)) for i in files if matches(i.base_name, patterns)
    ]
    return Listing(sorted(found, key=lambda s: s.uri), unmatched=len(files) - len(found))


def _walk_local(root: Path, patterns: list[str]) -> Listing:
    folders = [Path(os.path.realpath(root))]
    entered: set[tuple[int, int]] = set()
    found: dict[str, FileStat] = {}
    unmatched: set[str] = set()
    repeated = unreadable = 0
    while folders:
        folder = folders.pop()
        try:
            info = folder.stat()
            if (info.st_dev, info.st_ino) in entered:
                repeated += 1
                continue
            entered.add((info.st_dev, info.st_ino))
            entries = list(os.scandir(folder))
        except OSError:
            unreadable += 1
            continue
        for entry in entries:
            try:
                real = os.path.realpath(entry.path) if entry.is_symlink() else entry.path
                if entry.is_dir():  # follows a link
                    folders.append(Path(real))
                    continue
                if not entry.is_file() or real in found:
                    continue
                if matches(entry.name, patterns) or matches(os.path.basename(real), patterns):
                    stat_result = entry.stat()
                    found[real] = FileStat("file:" + real, stat_result.st_size, _from_ns(stat_result.st_mtime_ns))
                    unmatched.discard(real)
                else:
                    unmatched.add(real)
            except OSError:  # a link to nowhere, or a file that went away while listing: nothing to list
                continue
    files = sorted(found.values(), key=lambda s: s.uri)
    return Listing(files, unmatched=len(unmatched), repeated_folders=repeated, unreadable_folders=unreadable)


def _from_ns(ns: int) -> datetime:
    # Microseconds, truncated, as pyarrow's stat gives them, so that a file listed here and stat-ed there agree.
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)


def path_kind(uri: str) -> str:
    """``file``, ``folder`` or ``missing``."""
    fs, path = resolve(uri)
    kind = fs.get_file_info(path).type
    return {pafs.FileType.File: "file", pafs.FileType.Directory: "folder"}.get(kind, "missing")


def folder_entries(uri: str) -> list[tuple[str, str]]:
    """(base name, ``file`` or ``folder``) of each entry directly inside a folder, links followed."""
    fs, path = resolve(uri)
    kinds = {pafs.FileType.File: "file", pafs.FileType.Directory: "folder"}
    return [(i.base_name, kinds.get(i.type, "other")) for i in fs.get_file_info(pafs.FileSelector(path))]


def stat(uri: str) -> FileStat:
    """Size and modification time of one file, or an error when it is missing or not a file."""
    try:
        fs, path = resolve(uri)
        info = fs.get_file_info(path)
    except Exception as exc:
        return FileStat(uri, error=f"cannot stat: {exc}")
    if info.type == pafs.FileType.NotFound:
        return FileStat(uri, error=FILE_NOT_FOUND)
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
        return None, FILE_NOT_FOUND
    except Exception as exc:
        return None, f"cannot read file: {str(exc).strip() or type(exc).__name__}"


def _utc(mtime: datetime | None) -> datetime | None:
    if mtime is None:
        return None
    # Spark stores timestamps as UTC instants; a naive value would shift with the session time zone.
    return mtime if mtime.tzinfo else mtime.replace(tzinfo=UTC)
