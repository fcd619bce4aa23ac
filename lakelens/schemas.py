"""Every lake table's schema, declared once. Jobs ``select`` to these before writing; tests compare to them."""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql.types import (
    ArrayType,
    BinaryType,
    DateType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)


@dataclass(frozen=True)
class TableSpec:
    """A lake table: its name in the lake database, its columns, and its partition columns (last in schema)."""

    name: str
    schema: StructType
    partition_by: tuple[str, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        names = self.schema.fieldNames()
        if self.partition_by and tuple(names[-len(self.partition_by) :]) != self.partition_by:
            raise ValueError(f"table {self.name}: partition columns {self.partition_by} must come last in the schema")

    @property
    def columns(self) -> list[str]:
        return self.schema.fieldNames()


def _f(name: str, dtype: object, nullable: bool = True) -> StructField:
    return StructField(name, dtype, nullable)


IMAGES = TableSpec(
    name="images",
    description="One row per distinct image content (image_id = SHA-256 of the bytes); bad files are rows with error.",
    schema=StructType(
        [
            _f("image_id", StringType(), False),  # hex SHA-256 of bytes; of the uri when no bytes could be read
            _f("uri", StringType(), False),  # the first uri these bytes were seen at (all: image_uris)
            _f("bytes", BinaryType()),  # the file exactly as read; null when it could not be read
            _f("num_bytes", LongType()),
            _f("width", IntegerType()),  # after EXIF orientation is applied
            _f("height", IntegerType()),
            _f("format", StringType()),  # JPEG, PNG, GIF, WEBP, ... as Pillow names it
            _f("mode", StringType()),  # the file's own pixel mode (RGB, L, P, CMYK, I;16, RGBA, ...)
            _f("frames", IntegerType()),  # > 1 for animations; the first frame is the image
            _f("exif_orientation", IntegerType()),  # EXIF tag 274 (1 = upright); decoders rotate by it
            _f("error", StringType()),  # null when the image decodes fully; else why not
            _f("ingest_date", DateType(), False),
        ]
    ),
    partition_by=("ingest_date",),
)

IMAGE_URIS = TableSpec(
    name="image_uris",
    description="Every uri ever ingested and the image it held; size and modified time make re-ingest skip it.",
    schema=StructType(
        [
            _f("image_id", StringType(), False),
            _f("uri", StringType(), False),
            _f("size", LongType()),  # file length when listed or stat-ed; null when unknown
            _f("modified", TimestampType()),
            _f("ingest_date", DateType(), False),
        ]
    ),
    partition_by=("ingest_date",),
)

_BOX = StructType([_f(n, IntegerType()) for n in ("x0", "y0", "w", "h")])

SCENE_TRUTH = TableSpec(
    name="scene_truth",
    description="Ground truth of synthetic scenes (jobs.synth), joined to images by image_id.",
    schema=StructType(
        [
            _f("image_id", StringType(), False),
            _f("file", StringType()),  # relative to the synth folder
            _f("scene_id", LongType()),
            _f("width", IntegerType()),
            _f("height", IntegerType()),
            _f("labels", ArrayType(StringType())),  # shape per object, in object order
            _f("colours", ArrayType(StringType())),
            _f("sizes", ArrayType(StringType())),
            _f("boxes", ArrayType(_BOX)),  # visible extent per object, pixels
            _f("mask", BinaryType()),  # PNG of the uint8 class mask (0 background, 1.. shape classes)
            _f("mask_classes", ArrayType(StringType())),  # class of each mask value, in value order
            _f("caption", StringType()),
            _f("dup_group", LongType()),  # planted near-duplicate group, null if none
            _f("transform", StringType()),  # original, relayout, or the near-duplicate transform
            _f("similar_group", LongType()),
            _f("source", StringType()),  # the synth folder the row came from
        ]
    ),
)

COCO_TRUTH = TableSpec(
    name="coco_truth",
    description="Ground truth of COCO photos (coco128, coco_mini), joined to images by image_id.",
    schema=StructType(
        [
            _f("image_id", StringType(), False),
            _f("file", StringType()),  # relative to the data set's folder
            _f("source", StringType()),  # coco128 or coco_mini
            _f("split", StringType()),  # train or val
            _f("coco_id", LongType()),
            _f("width", IntegerType()),
            _f("height", IntegerType()),
            _f("labels", ArrayType(StringType())),  # COCO category name per object
            _f("boxes", ArrayType(_BOX)),  # per object, pixels
            _f("mask", BinaryType()),  # PNG semantic class mask, values index mask_classes; null if none
            _f("mask_classes", ArrayType(StringType())),
            _f("caption", StringType()),  # the first caption, null if none
            _f("captions", ArrayType(StringType())),
        ]
    ),
)

FASHION_MNIST = TableSpec(
    name="fashion_mnist",
    description="Fashion-MNIST as PNG rows with labels (jobs.import_dataset).",
    schema=StructType(
        [
            _f("image_id", StringType(), False),
            _f("bytes", BinaryType()),
            _f("label", IntegerType()),
            _f("class_name", StringType()),
            _f("split", StringType()),
            _f("index", LongType()),
        ]
    ),
)

TABLES: dict[str, TableSpec] = {
    spec.name: spec for spec in (IMAGES, IMAGE_URIS, SCENE_TRUTH, COCO_TRUTH, FASHION_MNIST)
}
