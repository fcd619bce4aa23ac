"""Ingest of real photos from ../shared/data (skipped where that folder is absent)."""

from __future__ import annotations

import hashlib
from datetime import date

from conftest import shared_folder
from PIL import Image, ImageOps
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from lakelens.lake import read_table
from lakelens.schemas import IMAGE_URIS, IMAGES
from stages.ingest import ingest

DAY = date(2026, 1, 2)


def test_coco128_photos_are_all_good_with_their_sizes(spark, cfg) -> None:
    folder = shared_folder("coco128", "images")
    files = sorted(folder.rglob("*.jpg"))
    counts = ingest(spark, cfg, str(folder), ingest_date=DAY)
    assert (counts.read, counts.good, counts.errors) == (len(files), len(files), 0)

    def upright_size(path):
        with Image.open(path) as img:
            return ImageOps.exif_transpose(img).size

    expected = spark.createDataFrame(
        [(f"file:{p.resolve()}", *upright_size(p), "JPEG") for p in files],
        "uri string, width int, height int, format string",
    )
    assertDataFrameEqual(read_table(spark, cfg, IMAGES).select("uri", "width", "height", "format"), expected)


def test_imagededup_ukbench_truncated_file_is_an_error_row(spark, cfg) -> None:
    folder = shared_folder("imagededup_ukbench")
    files = sorted(p for p in folder.rglob("*") if p.suffix in (".jpg", ".webp"))
    distinct = {hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    counts = ingest(spark, cfg, str(folder), ingest_date=DAY)
    assert (counts.read, counts.errors, counts.new_images, counts.new_uris) == (
        len(files),
        1,
        len(distinct),
        len(files),
    )

    bad = read_table(spark, cfg, IMAGES).filter(F.col("error").isNotNull()).collect()
    assert [r["uri"].rsplit("/", 1)[-1] for r in bad] == ["ukbench09268_corrupt.jpg"]
    # Its first bytes are damaged too, so it fails at the header, before any decode.
    assert bad[0]["error"].startswith(("not an image", "unreadable image header", "decode failed"))
    # The byte-identical copies under mixed_images/ share their base image's id.
    uris = read_table(spark, cfg, IMAGE_URIS)
    pairs = uris.groupBy("image_id").agg(F.count("uri").alias("n")).filter("n > 1").count()
    assert pairs == len(files) - len(distinct)
