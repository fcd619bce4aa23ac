"""Ingest's executor-side batch functions, without Spark."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from images import encode, rgb, write_files

from lakelens.files import list_files
from lakelens.ingest_rows import READ_SCHEMA, check_bytes, image_id_of, read_files, stat_files


def listing(folder: Path) -> pd.DataFrame:
    files = list_files(str(folder), ["*.png", "*.jpg"])
    return pd.DataFrame(
        {"uri": [f.uri for f in files], "size": [f.size for f in files], "modified": [f.modified for f in files]}
    )


@pytest.mark.parametrize("threads", [1, 3])
def test_read_files_bounds_output_batches_by_bytes(tmp_path: Path, threads: int) -> None:
    data = {f"{i:02d}.png": encode(rgb(32, 32, seed=i), "PNG") for i in range(10)}
    write_files(tmp_path, data)
    files = listing(tmp_path)
    one_file = len(data["00.png"])
    inputs = iter([files.iloc[:7], files.iloc[7:]])
    out = list(read_files(inputs, max_bytes=1 << 20, max_pixels=1 << 20, batch_bytes=2 * one_file, threads=threads))
    assert [len(b) for b in out] == [2, 2, 2, 2, 2]  # two files' bytes per batch, across input batches
    rows = pd.concat(out, ignore_index=True)
    assert list(rows.columns) == READ_SCHEMA.fieldNames()
    assert list(rows["uri"]) == list(files["uri"])  # order kept
    assert list(rows["image_id"]) == [image_id_of(data[Path(u).name], "") for u in rows["uri"]]
    assert rows["error"].isna().all() and (rows["width"] == 32).all()


def test_read_files_turns_a_missing_file_into_an_error_row(tmp_path: Path) -> None:
    write_files(tmp_path, {"a.png": encode(rgb(), "PNG")})
    files = pd.concat([listing(tmp_path), pd.DataFrame({"uri": [f"file:{tmp_path}/gone.png"], "size": [5]})])
    rows = pd.concat(read_files(iter([files]), max_bytes=1 << 20, max_pixels=1 << 20, batch_bytes=1 << 20, threads=2))
    gone = rows[rows["uri"].str.endswith("gone.png")].iloc[0]
    assert gone["error"].startswith("file not found") and gone["bytes"] is None and pd.isna(gone["num_bytes"])
    assert gone["image_id"] == image_id_of(None, f"file:{tmp_path}/gone.png")


def test_check_bytes_names_rows_without_uri_by_content(tmp_path: Path) -> None:
    a = encode(rgb(seed=1), "PNG")
    batch = pd.DataFrame({"uri": [None, "s3://bucket/b.png", None], "bytes": [a, b"junk", None]})
    rows = pd.concat(
        check_bytes(iter([batch]), source="file:/t.parquet", max_pixels=1 << 20, batch_bytes=1 << 20, threads=2)
    )
    assert list(rows["uri"]) == [
        f"file:/t.parquet#sha256={image_id_of(a, '')}",
        "s3://bucket/b.png",
        f"file:/t.parquet#sha256={image_id_of(None, '')}",
    ]
    assert [e is None for e in rows["error"]] == [True, False, False]
    assert rows["error"].iloc[2] == "no bytes in the source row"


def test_stat_files_resolves_relative_paths_against_the_list(tmp_path: Path) -> None:
    write_files(tmp_path / "imgs", {"a.png": encode(rgb(), "PNG")})
    out = next(stat_files(iter([pd.DataFrame({"uri": ["imgs/a.png", "imgs/none.png"]})]), base_dir=str(tmp_path)))
    assert list(out["uri"]) == [f"file:{tmp_path}/imgs/a.png", f"file:{tmp_path}/imgs/none.png"]
    assert out["size"].iloc[0] == (tmp_path / "imgs" / "a.png").stat().st_size and pd.isna(out["size"].iloc[1])
