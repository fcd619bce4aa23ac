"""Files by URI: listing with patterns, stat and bounded reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from lakelens.files import list_files, normalise_uri, read_bytes, stat


def test_normalise_uri_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert normalise_uri("x/a.jpg") == f"file:{tmp_path}/x/a.jpg"
    assert normalise_uri(f"file://{tmp_path}/a.jpg") == f"file:{tmp_path}/a.jpg"
    assert normalise_uri(f"file:{tmp_path}/a b.jpg") == f"file:{tmp_path}/a b.jpg"
    assert normalise_uri("s3://bucket/key.jpg") == "s3://bucket/key.jpg"


def test_list_files_is_recursive_case_insensitive_and_sorted(tmp_path: Path) -> None:
    for name in ["b.JPG", "a.png", "deep/er/c.jpeg", "notes.txt", "deep/d.Png"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x" * len(name))
    found = list_files(str(tmp_path), ["*.jpg", "*.jpeg", "*.png"])
    assert [f.uri.removeprefix(f"file:{tmp_path}/") for f in found] == [
        "a.png",
        "b.JPG",
        "deep/d.Png",
        "deep/er/c.jpeg",
    ]
    assert [f.size for f in found] == [5, 5, 10, 14]
    assert all(f.modified is not None and f.modified.tzinfo is not None for f in found)


def test_list_files_of_a_missing_folder_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="source folder not found"):
        list_files(str(tmp_path / "nope"), ["*"])


def test_read_bytes_and_stat_never_raise(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"0123456789")
    assert read_bytes(str(path), max_bytes=10) == (b"0123456789", None)
    assert read_bytes(str(path), max_bytes=9) == (None, "file too large: 10 bytes > ingest.max_bytes 9")
    assert read_bytes(str(tmp_path / "gone"), 10)[1].startswith("file not found")
    assert read_bytes(str(tmp_path), 10)[1].startswith("cannot read file")
    assert stat(str(path)).size == 10
    assert stat(str(tmp_path / "gone")).error == "file not found"
    assert stat(str(tmp_path)).error == "not a regular file (Directory)"
