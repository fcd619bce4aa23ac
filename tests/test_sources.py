"""What ``--source`` is, decided before Spark starts: folders stay folders unless plainly a Parquet table, a table's
image bytes are a documented column or a named one, and folder listings survive symbolic link loops."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from images import encode, rgb, write_files

from lakelens.errors import InputError, SourceNotFoundError
from lakelens.files import list_folder
from lakelens.sources import Source, SourceError, detect_format, open_source

PATTERNS = ["*.jpg", "*.png"]


def photo(seed: int = 0) -> bytes:
    return encode(rgb(seed=seed), "PNG")


def table(where: Path, **columns: list) -> Path:
    where.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), where)
    return where


def test_a_synth_folder_with_images_and_ground_truth_is_refused_naming_format(tmp_path: Path) -> None:
    write_files(tmp_path / "images", {"s1.png": photo(1), "s2.png": photo(2)})
    table(tmp_path / "ground_truth.parquet", image=[b"mask"], caption=["a mask"])
    with pytest.raises(SourceError, match=r"holds Parquet files \(ground_truth.parquet\) and other files or "
                       r"folders \(images/\); give --format folder"):  # fmt: skip
        detect_format(str(tmp_path))
    assert open_source(str(tmp_path), "folder") == Source(str(tmp_path), "folder")


@pytest.mark.parametrize("layout", ["photos at the top", "photos in subfolders"])
def test_photos_beside_a_stray_parquet_file_are_refused(tmp_path: Path, layout: str) -> None:
    where = "" if layout == "photos at the top" else "trip/"
    write_files(tmp_path, {f"{where}a.jpg": photo(1), f"{where}b.jpg": photo(2)})
    table(tmp_path / "notes.parquet", thumbnail=[b"x"])
    with pytest.raises(SourceError, match="--format"):
        open_source(str(tmp_path))


def test_plain_parquet_datasets_are_tables(tmp_path: Path) -> None:
    spark_like = tmp_path / "written"
    table(spark_like / "part-00000-abc.snappy.parquet", bytes=[photo()])
    (spark_like / "_SUCCESS").write_bytes(b"")
    (spark_like / ".part-00000-abc.snappy.parquet.crc").write_bytes(b"crc")
    assert detect_format(str(spark_like)) == "parquet"

    partitioned = tmp_path / "partitioned"
    table(partitioned / "day=2026-01-01" / "part-0.parquet", content=[photo()])
    table(partitioned / "day=2026-01-02" / "part-0.parquet", content=[photo(1)])
    assert open_source(str(partitioned)) == Source(str(partitioned), "parquet", "content", None)

    lone = table(tmp_path / "one.parquet", path=["a.png"])
    assert open_source(str(lone)) == Source(str(lone), "parquet", None, "path")


def test_folders_of_images_stay_folders_whatever_their_subfolders_are_called(tmp_path: Path) -> None:
    write_files(tmp_path / "photos", {"year=2024/a.jpg": photo(1), "b.jpg": photo(2), "_tmp/c.jpg": photo(3)})
    assert detect_format(str(tmp_path / "photos")) == "folder"
    (tmp_path / "empty").mkdir()
    assert detect_format(str(tmp_path / "empty")) == "folder"
    write_files(tmp_path / "mixed", {"year=2024/a.jpg": photo(1)})
    table(tmp_path / "mixed" / "year=2025" / "part-0.parquet", bytes=[photo()])
    with pytest.raises(SourceError, match=r"year=2024/a.jpg"):
        detect_format(str(tmp_path / "mixed"))


def test_a_table_s_image_bytes_are_a_documented_column_or_a_named_one(tmp_path: Path) -> None:
    thumbs = table(tmp_path / "thumbs.parquet", name=["a"], thumbnail=[photo()])
    with pytest.raises(SourceError, match=r"binary columns \(thumbnail\) but none named bytes, content, image, data: "
                       "name the column of image bytes with --bytes-column"):  # fmt: skip
        open_source(str(thumbs))
    assert open_source(str(thumbs), bytes_column="thumbnail") == Source(str(thumbs), "parquet", "thumbnail", None)
    with pytest.raises(SourceError, match=r"no binary column of that name \(binary columns: thumbnail\)"):
        open_source(str(thumbs), bytes_column="name")

    # A table of paths with an undocumented binary column beside them reads the files its paths name.
    paths = table(tmp_path / "paths.parquet", uri=["a.png"], thumbnail=[photo()])
    assert open_source(str(paths)) == Source(str(paths), "parquet", None, "uri")
    with pytest.raises(SourceError, match="neither image bytes .* nor file paths"):
        open_source(str(table(tmp_path / "nothing.parquet", name=["a"])))


def test_bad_sources_are_input_errors_with_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(SourceNotFoundError, match="source not found"):
        open_source(str(tmp_path / "nope"))
    assert SourceNotFoundError("x").label == "FileNotFoundError"  # what the one-line message names
    (tmp_path / "notes.csv").write_text("a,b")
    with pytest.raises(InputError, match="--format list or --format parquet"):
        open_source(str(tmp_path / "notes.csv"))
    with pytest.raises(InputError, match="cannot read .* as a Parquet table"):
        open_source(str(tmp_path / "notes.csv"), "parquet")
    with pytest.raises(InputError, match="--bytes-column is for Parquet tables"):
        open_source(str(tmp_path), "folder", "bytes")


def test_symbolic_link_loops_are_listed_once_and_counted(tmp_path: Path) -> None:
    write_files(tmp_path / "src", {"a/one.png": photo(1), "a/b/two.png": photo(2)})
    os.symlink(tmp_path / "src" / "a", tmp_path / "src" / "a" / "b" / "up")  # a loop
    os.symlink(tmp_path / "src", tmp_path / "src" / "a" / "root")  # a second loop, through the top
    os.symlink(tmp_path / "src" / "a" / "one.png", tmp_path / "src" / "link.png")  # a second name for one file
    os.symlink(tmp_path / "gone.png", tmp_path / "src" / "dangling.png")
    listing = list_folder(str(tmp_path / "src"), PATTERNS)
    assert [f.uri for f in listing.files] == [f"file:{tmp_path}/src/a/b/two.png", f"file:{tmp_path}/src/a/one.png"]
    assert listing.repeated_folders == 2


def test_a_linked_source_and_linked_files_are_listed_under_their_real_paths(tmp_path: Path) -> None:
    write_files(tmp_path / "store", {"blob1": photo(1), "c.png": photo(3)})
    (tmp_path / "view").mkdir()
    os.symlink(tmp_path / "store" / "blob1", tmp_path / "view" / "cat.jpg")  # matched by the link's own name
    os.symlink(tmp_path / "store", tmp_path / "view" / "more")
    os.symlink(tmp_path / "view", tmp_path / "entry")
    listing = list_folder(str(tmp_path / "entry"), PATTERNS)
    assert [f.uri for f in listing.files] == [f"file:{tmp_path}/store/blob1", f"file:{tmp_path}/store/c.png"]
    assert (listing.unmatched, listing.repeated_folders) == (0, 0)
    assert [f.size for f in listing.files] == [len(photo(1)), len(photo(3))]
