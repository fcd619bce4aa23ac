"""Every lake table's schema, declared once. Jobs ``select`` to these before writing; tests compare to them."""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql.types import (
    ArrayType,
    BinaryType,
    DateType,
    DoubleType,
    FloatType,
    IntegerType,
    LongType,
    MapType,
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


def _annotations(name: str, description: str, outputs: list[StructField]) -> TableSpec:
    """A table of jobs.annotate: one row per image and model version; outputs null where ``error`` says why."""
    return TableSpec(
        name=name,
        description=description,
        schema=StructType(
            [
                _f("image_id", StringType(), False),
                *outputs,
                _f("error", StringType()),  # null when the model annotated the image; else why it could not
                _f("annotated_at", TimestampType(), False),  # the run that wrote the row
                _f("model", StringType(), False),  # registry name and version of the model that made the row
                _f("model_version", StringType(), False),
            ]
        ),
        partition_by=("model", "model_version"),
    )


_SCORED_LABEL = StructType([_f("label", StringType()), _f("score", FloatType())])

LABELS = _annotations(
    "labels",
    "Classifier output per image: the best label and score, and the top labels (multi-label: those above threshold).",
    [_f("label", StringType()), _f("score", FloatType()), _f("labels", ArrayType(_SCORED_LABEL))],
)

_OBJECT = StructType(
    [_f("label", StringType()), _f("score", FloatType()), *[_f(n, FloatType()) for n in ("x0", "y0", "w", "h")]]
)

DETECTIONS = _annotations(
    "detections",
    "Detector output per image: objects with label, score and box (x0, y0, w, h in the image's pixels), best first.",
    [_f("objects", ArrayType(_OBJECT))],
)

SEGMENTS = _annotations(
    "segments",
    "Segmenter output per image: PNG class mask at the image's size, its classes, and the share of pixels per class.",
    [
        _f("mask", BinaryType()),  # 8-bit PNG; value k is mask_classes[k]
        _f("mask_classes", ArrayType(StringType())),
        _f("fractions", MapType(StringType(), FloatType())),  # class -> share of pixels, classes present only
    ],
)

CAPTIONS = _annotations(
    "captions",
    "Captioner output per image: a sentence and its score (geometric mean of its words' probabilities).",
    [_f("caption", StringType()), _f("score", FloatType())],
)

EMBEDDINGS = _annotations(
    "embeddings",
    "Embedder output per image: an L2-normalised float32 vector (cosine = dot product).",
    [_f("vector", ArrayType(FloatType()))],
)

COLOURISED = _annotations(
    "colourised",
    "Colouriser output per grey or tinted image (colour images get no row: annotate_left_out): RGB at its size.",
    [
        _f("png", BinaryType()),  # RGB PNG at the image's width and height; its lightness is the image's own
        _f("kind", StringType()),  # grey (no chroma) or tinted (one hue, as sepia)
    ],
)

RECONSTRUCTIONS = _annotations(
    "reconstructions",
    "Autoencoder output per image: how badly it reconstructs (odd images first) and where; its code is in embeddings.",
    [
        _f("error_per_pixel", FloatType()),  # mean squared error per pixel and channel, pixels in [0, 1]
        # error_per_pixel / sqrt(coarse error + 0.001), coarse: of the image's 4 x 4 average: odd images first,
        # simple ones (blank frames) too, which any autoencoder gives back well
        _f("unusualness", FloatType()),
        _f("worst_region", _BOX),  # the cell of a 4 x 4 grid reconstructed worst, in the image's pixels
        _f("worst_error", FloatType()),  # that cell's error per pixel
        _f("reconstruction", BinaryType()),  # PNG of the reconstruction at the model's input size
    ],
)

ANNOTATE_LEFT_OUT = TableSpec(
    name="annotate_left_out",
    description="Images a task's model saw and left out on purpose (colourise: colour images), so none is seen again.",
    schema=StructType(
        [
            _f("image_id", StringType(), False),
            _f("task", StringType(), False),
            _f("kind", StringType(), False),  # what the image is, as the task names it (colourise: colour)
            _f("annotated_at", TimestampType(), False),
            _f("model", StringType(), False),
            _f("model_version", StringType(), False),
        ]
    ),
    partition_by=("model", "model_version"),
)

LSH_PARAMS = TableSpec(
    name="lsh_params",
    description="Every signature scheme jobs.index has used: its params_id and all its parameters (JSON).",
    schema=StructType(
        [
            _f("params_id", StringType(), False),
            _f("kind", StringType(), False),  # minhash (near-duplicates); exact or simhash (similar images)
            _f("params", StringType(), False),  # JSON: num_perm, seed, recipe, bands, library; or model, dim, ...
            _f("created_at", TimestampType(), False),
        ]
    ),
)

SIGNATURES = TableSpec(
    name="signatures",
    description="Near-duplicate MinHash signature per image (datasketch 2.x), with the scheme that made it.",
    schema=StructType(
        [
            _f("image_id", StringType(), False),
            _f("minhash", ArrayType(LongType())),  # num_perm uint32 hash values; null when error
            _f("tokens", IntegerType()),  # perceptual tokens hashed
            _f("error", StringType()),  # ingest error, or why no tokens could be made
            _f("scheme", StringType(), False),  # datasketch permutation scheme (affine32)
            _f("num_perm", IntegerType(), False),
            _f("seed", LongType(), False),
            _f("recipe", StringType(), False),  # perceptual token recipe
            _f("indexed_at", TimestampType(), False),
            _f("params_id", StringType(), False),
        ]
    ),
    partition_by=("params_id",),
)

LSH_BUCKETS = TableSpec(
    name="lsh_buckets",
    description="LSH band keys per image: images sharing (kind, params_id, band, key) are candidate pairs.",
    schema=StructType(
        [
            _f("image_id", StringType(), False),
            _f("band", IntegerType(), False),
            _f("key", BinaryType(), False),  # minhash: datasketch MinHashLSH's band key; simhash: packed sign bits
            _f("kind", StringType(), False),
            _f("params_id", StringType(), False),
        ]
    ),
    partition_by=("kind", "params_id"),
)

HOT_BUCKETS = TableSpec(
    name="hot_buckets",
    description="Buckets too large to pair all their images: members were linked to the bucket's first image.",
    schema=StructType(
        [
            _f("band", IntegerType(), False),
            _f("key", BinaryType(), False),
            _f("size", LongType(), False),  # images in the bucket when it was capped
            _f("leader", StringType(), False),  # the smallest image_id: every member was compared with it only
            _f("indexed_at", TimestampType(), False),
            _f("kind", StringType(), False),
            _f("params_id", StringType(), False),
        ]
    ),
    partition_by=("kind", "params_id"),
)

NEAR_DUP_PAIRS = TableSpec(
    name="near_dup_pairs",
    description="Verified near-duplicate pairs (image_id_a < image_id_b) with their estimated Jaccard similarity.",
    schema=StructType(
        [
            _f("image_id_a", StringType(), False),
            _f("image_id_b", StringType(), False),
            _f("similarity", FloatType(), False),
            _f("method", StringType(), False),  # minhash-jaccard
            _f("params_id", StringType(), False),
        ]
    ),
    partition_by=("params_id",),
)

DUP_GROUPS = TableSpec(
    name="dup_groups",
    description="Near-duplicate groups: connected components of near_dup_pairs; group_id is the smallest image_id.",
    schema=StructType(
        [
            _f("image_id", StringType(), False),
            _f("group_id", StringType(), False),
            _f("group_size", LongType(), False),
            _f("params_id", StringType(), False),
        ]
    ),
    partition_by=("params_id",),
)

SIMILAR = TableSpec(
    name="similar",
    description="The k most similar images per image by cosine of their embeddings (rank 1 = most similar).",
    schema=StructType(
        [
            _f("image_id", StringType(), False),
            _f("neighbor_id", StringType(), False),
            _f("rank", IntegerType(), False),
            _f("cosine", FloatType(), False),
            _f("model", StringType(), False),  # the embedding model and version: name:vN
            _f("params_id", StringType(), False),
        ]
    ),
    partition_by=("params_id",),
)

SEARCH_RESULTS = TableSpec(
    name="search_results",
    description="jobs.search --queries: each query's best images in the text-image space, by cosine (rank 1 = best).",
    schema=StructType(
        [
            _f("query_id", StringType(), False),  # the first 16 hex digits of SHA-256 of the query's text
            _f("query", StringType(), False),
            _f("rank", IntegerType(), False),
            _f("image_id", StringType(), False),
            _f("score", FloatType(), False),  # cosine of the query's and the image's vectors
            _f("searched_at", TimestampType(), False),  # the run that wrote the row
            _f("model", StringType(), False),  # the text-image model and version that made both vectors
            _f("model_version", StringType(), False),
        ]
    ),
    partition_by=("model", "model_version"),  # a run replaces its model version's results
)

RUNS = TableSpec(
    name="runs",
    description="One row per stage of every nightly run, and one for the run itself: rows, speed, models, config.",
    schema=StructType(
        [
            _f("run_id", StringType(), False),
            _f("stage", StringType(), False),  # ingest, annotate, index:near_dup, index:similar; nightly: all
            _f("status", StringType(), False),  # done or failed
            _f("started_at", TimestampType(), False),
            _f("ended_at", TimestampType(), False),
            _f("rows_in", LongType()),  # files listed, images pending, signatures to make
            _f("rows_out", LongType()),  # rows written: images read, annotations, verified pairs, top-k lists
            _f("errors", LongType()),  # rows that became error rows, or images skipped (no embedding)
            _f("images_per_s", DoubleType()),  # rows_in over the stage's wall time
            _f("models", StringType()),  # name:vN of the stage's model, and the LSH params_id
            _f("config_hash", StringType(), False),  # Config.digest() of the effective configuration
            _f("source", StringType(), False),
            _f("message", StringType()),  # the stage's summary line, or why it failed
        ]
    ),
)

TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        IMAGES,
        IMAGE_URIS,
        SCENE_TRUTH,
        COCO_TRUTH,
        FASHION_MNIST,
        LABELS,
        DETECTIONS,
        SEGMENTS,
        CAPTIONS,
        EMBEDDINGS,
        COLOURISED,
        RECONSTRUCTIONS,
        ANNOTATE_LEFT_OUT,
        LSH_PARAMS,
        SIGNATURES,
        LSH_BUCKETS,
        HOT_BUCKETS,
        NEAR_DUP_PAIRS,
        DUP_GROUPS,
        SIMILAR,
        SEARCH_RESULTS,
        RUNS,
    )
}
