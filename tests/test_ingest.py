"""Ingest on the session's local Spark: every odd file is a row, re-runs add nothing, all source kinds work."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from images import ODD_EXPECTED, encode, odd_files, rgb, write_files
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from lakelens.ingest_rows import image_id_of
from lakelens.lake import read_table
from lakelens.schemas import IMAGE_URIS, IMAGES
from lakelens.sources import extract_candidates, open_source
from stages.ingest import ingest, transform_read

DAY = date(2026, 1, 2)


def images_by_name(spark, cfg):
    return read_table(spark, cfg, IMAGES).withColumn("name", F.element_at(F.split("uri", "/"), -1))


def test_every_odd_file_is_one_row_with_its_metadata_or_error(spark, cfg, tmp_path: Path) -> None:
    write_files(tmp_path / "src", odd_files())
    seen_then: list[tuple[int, int]] = []  # (images, image_uris) rows when ingest says images are written

    def images_written() -> None:
        seen_then.append(tuple(read_table(spark, cfg, t).count() for t in (IMAGES, IMAGE_URIS)))

    counts = ingest(spark, cfg, str(tmp_path / "src"), ingest_date=DAY, images_written=images_written)

    n = len(ODD_EXPECTED)
    n_errors = sum(1 for e in ODD_EXPECTED.values() if e[-1] is not None)
    assert (counts.listed, counts.read, counts.good, counts.errors) == (n, n, n - n_errors, n_errors)
    assert (counts.new_images, counts.duplicates, counts.new_uris) == (n, 0, n)
    assert seen_then == [(n, 0)]  # the other stages may start; image_uris (ingest's own) comes after

    expected = spark.createDataFrame(
        [(name, *meta, err is None, DAY) for name, (*meta, err) in ODD_EXPECTED.items()],
        "name string, format string, mode string, width int, height int, frames int, exif_orientation int, "
        "good boolean, ingest_date date",
    )
    actual = images_by_name(spark, cfg).select(
        "name",
        "format",
        "mode",
        "width",
        "height",
        "frames",
        "exif_orientation",
        F.col("error").isNull().alias("good"),
        "ingest_date",
    )
    assertDataFrameEqual(actual, expected)
    errors = {r["name"]: r["error"] for r in images_by_name(spark, cfg).collect()}
    for name, (*_, prefix) in ODD_EXPECTED.items():
        assert (errors[name] or "").startswith(prefix or ""), (name, errors[name])


def test_rows_carry_bytes_and_content_ids(spark, cfg, tmp_path: Path) -> None:
    files = {"a.png": encode(rgb(seed=11), "PNG"), "sub/b.jpg": encode(rgb(seed=12), "JPEG")}
    write_files(tmp_path / "src", files)
    ingest(spark, cfg, str(tmp_path / "src"), ingest_date=DAY)
    expected = spark.createDataFrame(
        [(image_id_of(data, ""), f"file:{tmp_path / 'src' / name}", data, len(data)) for name, data in files.items()],
        "image_id string, uri string, bytes binary, num_bytes bigint",
    )
    assertDataFrameEqual(read_table(spark, cfg, IMAGES).select("image_id", "uri", "bytes", "num_bytes"), expected)


def test_reingest_adds_nothing_and_new_files_add_only_themselves(spark, cfg, tmp_path: Path) -> None:
    write_files(tmp_path / "src", {"a.png": encode(rgb(seed=1), "PNG"), "bad.jpg": b"nope"})
    ingest(spark, cfg, str(tmp_path / "src"), ingest_date=DAY)
    before_images = read_table(spark, cfg, IMAGES).collect()
    before_uris = read_table(spark, cfg, IMAGE_URIS).collect()

    again = ingest(spark, cfg, str(tmp_path / "src"), ingest_date=date(2026, 1, 3))
    assert (again.listed, again.unchanged, again.read, again.new_images, again.new_uris) == (2, 2, 0, 0, 0)
    assertDataFrameEqual(read_table(spark, cfg, IMAGES), before_images)
    assertDataFrameEqual(read_table(spark, cfg, IMAGE_URIS), before_uris)

    write_files(tmp_path / "src" / "new", {"c.png": encode(rgb(seed=3), "PNG")})
    more = ingest(spark, cfg, str(tmp_path / "src"), ingest_date=date(2026, 1, 4))
    assert (more.listed, more.unchanged, more.read, more.new_images, more.new_uris) == (3, 2, 1, 1, 1)
    dates = read_table(spark, cfg, IMAGES).groupBy("ingest_date").count()
    assertDataFrameEqual(
        dates, spark.createDataFrame([(DAY, 2), (date(2026, 1, 4), 1)], "ingest_date date, count bigint")
    )


def test_identical_bytes_are_one_image_with_every_uri(spark, cfg, tmp_path: Path) -> None:
    data = encode(rgb(seed=5), "PNG")
    write_files(tmp_path / "src", {"x.png": data, "copy/x.png": data, "y.png": data})
    counts = ingest(spark, cfg, str(tmp_path / "src"), ingest_date=DAY)
    assert (counts.read, counts.new_images, counts.duplicates, counts.new_uris) == (3, 1, 2, 3)
    image_id = image_id_of(data, "")
    assertDataFrameEqual(
        read_table(spark, cfg, IMAGES).select("image_id", "uri"),
        [(image_id, f"file:{tmp_path / 'src' / 'copy' / 'x.png'}")],  # the first uri by name
    )
    assertDataFrameEqual(
        read_table(spark, cfg, IMAGE_URIS).select("image_id", "uri"),
        [(image_id, f"file:{tmp_path / 'src' / n}") for n in ("x.png", "copy/x.png", "y.png")],
    )
    # The same bytes in a later source are a duplicate, not a new image.
    write_files(tmp_path / "later", {"z.png": data})
    later = ingest(spark, cfg, str(tmp_path / "later"), ingest_date=DAY)
    assert (later.read, later.new_images, later.duplicates, later.new_uris) == (1, 0, 1, 1)


def test_file_that_disappears_after_listing_is_an_error_row(spark, cfg, tmp_path: Path) -> None:
    paths = write_files(tmp_path / "src", {"stays.png": encode(rgb(seed=1), "PNG"), "goes.png": encode(rgb(), "PNG")})
    candidates, listed, _ = extract_candidates(spark, cfg, open_source(str(tmp_path / "src"), "folder"))
    paths[1].unlink()
    read = transform_read(candidates, 2, cfg.ingest)
    rows = read.select("uri", "error").collect()
    got = {Path(r["uri"]).name: r["error"] for r in rows}
    assert listed == 2 and got["stays.png"] is None
    assert got["goes.png"].startswith("file not found")


def test_folder_glob_and_size_limit(spark, cfg, tmp_path: Path) -> None:
    write_files(
        tmp_path / "src", {"a.JPG": encode(rgb(), "JPEG"), "notes.txt": b"x", "b.png": encode(rgb(40, 40), "PNG")}
    )
    from lakelens.config import load_config

    small = load_config(
        overrides=[
            f"lake.root={cfg.lake.root}",
            f"lake.database={cfg.lake.database}",
            "ingest.patterns=['*.jpg', '*.png']",
            "ingest.max_bytes=2000",
        ]
    )
    counts = ingest(spark, small, str(tmp_path / "src"), ingest_date=DAY)
    assert (counts.listed, counts.good, counts.errors) == (2, 1, 1)
    errors = dict(read_table(spark, small, IMAGES).select("uri", "error").collect())
    assert errors[f"file:{tmp_path / 'src' / 'a.JPG'}"] is None  # patterns match case-insensitively
    assert errors[f"file:{tmp_path / 'src' / 'b.png'}"].startswith("file too large")


def test_list_source_with_relative_and_missing_paths(spark, cfg, tmp_path: Path) -> None:
    write_files(tmp_path / "imgs", {"a.png": encode(rgb(seed=1), "PNG"), "b.png": encode(rgb(seed=2), "PNG")})
    listing = tmp_path / "paths.txt"
    listing.write_text(
        f"# images to ingest\nimgs/a.png\n\n{tmp_path / 'imgs' / 'b.png'}\nimgs/a.png\nimgs/missing.png\n"
    )
    counts = ingest(spark, cfg, str(listing), ingest_date=DAY)
    assert (counts.listed, counts.read, counts.good, counts.errors) == (3, 3, 2, 1)
    errors = dict(read_table(spark, cfg, IMAGES).select("uri", "error").collect())
    assert errors[f"file:{tmp_path / 'imgs' / 'missing.png'}"].startswith("file not found")
    again = ingest(spark, cfg, str(listing), ingest_date=DAY)
    assert (again.unchanged, again.read, again.new_images, again.new_uris) == (3, 0, 0, 0)


def test_parquet_sources_with_bytes_or_paths(spark, cfg, tmp_path: Path) -> None:
    a, b = encode(rgb(seed=1), "PNG"), encode(rgb(seed=2), "JPEG")
    table = tmp_path / "with_bytes.parquet"
    pq.write_table(pa.table({"name": ["a", "b", "broken"], "content": [a, b, b"\x00\x01"]}), table)
    counts = ingest(spark, cfg, str(table), ingest_date=DAY)
    assert (counts.read, counts.good, counts.errors, counts.new_images) == (3, 2, 1, 3)
    uris = sorted(r["uri"] for r in read_table(spark, cfg, IMAGES).collect())
    assert uris == sorted(f"file:{table}#sha256={image_id_of(d, '')}" for d in (a, b, b"\x00\x01"))
    assert ingest(spark, cfg, str(table), ingest_date=DAY).new_uris == 0

    write_files(tmp_path / "imgs", {"c.png": encode(rgb(seed=3), "PNG")})
    paths = tmp_path / "paths_table"
    pq.write_to_dataset(pa.table({"path": [str(tmp_path / "imgs" / "c.png")]}), paths)
    counts = ingest(spark, cfg, str(paths), ingest_date=DAY)
    assert (counts.read, counts.good, counts.new_images) == (1, 1, 1)


def test_missing_source_fails_loudly(spark, cfg, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="source not found"):
        ingest(spark, cfg, str(tmp_path / "nowhere"))


def test_tables_have_the_declared_schemas(spark, cfg, tmp_path: Path) -> None:
    write_files(tmp_path / "src", {"a.png": encode(rgb(), "PNG")})
    ingest(spark, cfg, str(tmp_path / "src"), ingest_date=DAY)
    for spec in (IMAGES, IMAGE_URIS):
        table = spark.table(f"{cfg.lake.database}.{spec.name}")
        assert [(f.name, f.dataType) for f in table.schema] == [(f.name, f.dataType) for f in spec.schema]


def test_an_empty_folder_ingests_nothing_and_says_so(spark, cfg, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    counts = ingest(spark, cfg, str(tmp_path / "empty"), ingest_date=DAY)
    assert (counts.listed, counts.read, counts.new_images, counts.new_uris) == (0, 0, 0, 0)
    assert read_table(spark, cfg, IMAGES).count() == 0


def test_a_folder_without_images_says_what_it_holds(spark, cfg, tmp_path: Path) -> None:
    write_files(tmp_path / "docs", {"notes.txt": b"x", "deep/readme.md": b"y"})
    counts = ingest(spark, cfg, str(tmp_path / "docs"), ingest_date=DAY)
    assert counts.listed == 0
    assert f"no image files in {tmp_path / 'docs'}: 2 files there, none named like *.jpg" in counts.summary()
    assert "(--glob to widen)" in counts.summary()
    (tmp_path / "empty").mkdir()
    assert "the folder holds no files" in ingest(spark, cfg, str(tmp_path / "empty"), ingest_date=DAY).summary()


def test_a_folder_with_link_loops_ingests_each_file_once(spark, cfg, tmp_path: Path) -> None:
    write_files(tmp_path / "src", {"a/one.png": encode(rgb(seed=1), "PNG"), "two.png": encode(rgb(seed=2), "PNG")})
    (tmp_path / "src" / "a" / "up").symlink_to(tmp_path / "src")
    (tmp_path / "src" / "a" / "again").symlink_to(tmp_path / "src" / "a")
    counts = ingest(spark, cfg, str(tmp_path / "src"), ingest_date=DAY)
    assert (counts.listed, counts.read, counts.new_uris) == (2, 2, 2)
    assert "2 links to folders already listed (symbolic link loops or second paths) not followed" in counts.summary()


def test_a_parquet_table_s_named_bytes_column_is_ingested(spark, cfg, tmp_path: Path) -> None:
    data = encode(rgb(seed=4), "PNG")
    thumbs = tmp_path / "thumbs.parquet"
    pq.write_table(pa.table({"name": ["a"], "small": [b"not it"], "thumbnail": [data]}), thumbs)
    counts = ingest(spark, cfg, open_source(str(thumbs), bytes_column="thumbnail"), ingest_date=DAY)
    assert (counts.read, counts.good, counts.new_images) == (1, 1, 1)
    assertDataFrameEqual(read_table(spark, cfg, IMAGES).select("bytes"), [(data,)])


def test_missing_list_entries_and_files_gone_after_listing_say_which(spark, cfg, tmp_path: Path) -> None:
    paths = write_files(tmp_path / "src", {"stays.png": encode(rgb(seed=1), "PNG"), "goes.png": encode(rgb(), "PNG")})
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    listing = tmp_path / "paths.txt"
    listing.write_text(f"{paths[0]}\n{tmp_path / 'never.png'}\n{tmp_path / 'loop'}\n")
    ingest(spark, cfg, str(listing), ingest_date=DAY)
    errors = dict(read_table(spark, cfg, IMAGES).select("uri", "error").collect())
    assert errors[f"file:{tmp_path / 'never.png'}"] == "file not found"  # never there: nothing was removed
    assert errors[f"file:{tmp_path / 'loop'}"].startswith("cannot read file")  # a link loop is a row, not a crash

    candidates, _, _ = extract_candidates(spark, cfg, open_source(str(tmp_path / "src"), "folder"))
    paths[1].unlink()
    gone = transform_read(candidates, 2, cfg.ingest).where(F.col("error").isNotNull()).first()
    assert gone["error"] == "file not found (removed after it was listed)"
