"""The Spark side of training: which rows of a lake table a model learns from, and their target columns.

A training snapshot row is (image_id, bytes, target columns..., holdout). The targets per model kind:

- classifier, embedder: ``label``, an integer class id, or for multi-label the list of distinct class ids;
- detector: ``boxes``, a flat list x0, y0, w, h per object normalised by the image's size, and ``box_labels``,
  the class id per object;
- segmenter: ``mask``, the PNG class mask;
- captioner: ``caption``, the text.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType


def transform_with_bytes(table: DataFrame, images: DataFrame) -> DataFrame:
    """Ground truth joined to the ``images`` table's bytes and error (and width, height when the table has none)
    when it has no bytes of its own."""
    if "bytes" in table.columns:
        return table
    wanted = ["image_id", "bytes", "error"] + [c for c in ("width", "height") if c not in table.columns]
    return table.join(images.select(*wanted), on="image_id", how="inner")


def label_targets(label_column: str, classes: Sequence[str] | None = None) -> dict[str, Column]:
    """``label``: the integer class id, or with ``classes`` (multi-label: the column holds lists of class names)
    the distinct ids of the names in the list."""
    if classes is None:
        return {"label": F.col(label_column).cast("long")}
    return {"label": F.array_distinct(_class_ids(F.col(label_column), classes))}


def box_targets(box_column: str, label_column: str, classes: Sequence[str]) -> dict[str, Column]:
    """``boxes`` (flat x0, y0, w, h per object, as fractions of the image's width and height) and ``box_labels``
    (class id per object). Objects whose name is not in ``classes`` are dropped with their box."""
    names = F.array(*[F.lit(c) for c in classes])
    kept = F.filter(
        F.arrays_zip(F.col(box_column).alias("box"), F.col(label_column).alias("name")),
        lambda o: F.array_contains(names, o["name"]),
    )
    width, height = F.col("width").cast("double"), F.col("height").cast("double")
    boxes = F.flatten(
        F.transform(
            kept,
            lambda o: F.array(
                o["box"]["x0"] / width, o["box"]["y0"] / height, o["box"]["w"] / width, o["box"]["h"] / height
            ),
        )
    )
    labels = F.transform(kept, lambda o: (F.array_position(names, o["name"]) - 1).cast("long"))
    return {"boxes": boxes.cast("array<float>"), "box_labels": labels}


def transform_one_caption_per_row(table: DataFrame, column: str) -> DataFrame:
    """With ``column`` a list of captions (COCO has five per photo), one row per caption in ``caption``;
    otherwise ``column`` as ``caption``."""
    if isinstance(table.schema[column].dataType, ArrayType):
        return table.withColumn("caption", F.explode(column))
    return table.withColumn("caption", F.col(column))


def transform_training_rows(table: DataFrame, targets: dict[str, Column], holdout_percent: int) -> DataFrame:
    """(image_id, bytes, targets..., holdout) for every row with bytes, all targets and no error.

    ``holdout`` is stable per image: the first 8 hex digits of SHA-256(image_id), mod 100, below
    ``holdout_percent``.
    """
    rows = table.filter(F.col("bytes").isNotNull())
    for expr in targets.values():
        # An image without this target (a photo without a mask or caption) teaches nothing here.
        rows = rows.filter(expr.isNotNull())
    if "error" in table.columns:
        rows = rows.filter(F.col("error").isNull())
    bucket = F.conv(F.substring(F.sha2(F.col("image_id"), 256), 1, 8), 16, 10).cast("long") % 100
    columns = [expr.alias(name) for name, expr in targets.items()]
    return rows.select("image_id", "bytes", *columns, (bucket < holdout_percent).alias("holdout"))


def small_groups(rows: DataFrame, column: str, mean_rows: float) -> bool:
    """Whether values of ``column`` hold ``mean_rows`` rows or fewer on average (near-duplicate or same-content
    groups, not classes)."""
    counts = rows.agg(F.count("*").alias("rows"), F.countDistinct(column).alias("values")).first()
    return bool(counts["values"]) and counts["rows"] / counts["values"] <= mean_rows


def load_snapshot(parts: dict[str, DataFrame], folder: str, group_column: str | None = None) -> dict[str, int]:
    """Write each part as Parquet under ``folder`` (never over an existing snapshot); rows per part.

    With ``group_column`` the training part keeps rows of equal value next to each other, groups in random order,
    so the loader's shuffling buffer brings a group's rows into the same few batches: a metric loss sees its
    positives when groups are a few rows among thousands.
    """
    counts = {}
    for part, rows in parts.items():
        # Several files, so petastorm can shuffle row groups between epochs.
        if group_column and part == "train":
            key = F.col(group_column)
            laid_out = rows.repartition(8, key).sortWithinPartitions(F.xxhash64(key))
        else:
            laid_out = rows.repartition(8)
        laid_out.drop("holdout").write.mode("error").parquet(f"{folder}/{part}")
        counts[part] = rows.sparkSession.read.parquet(f"{folder}/{part}").count()
    return counts


def class_names(table: DataFrame, label_column: str, given: str | None) -> tuple[list[str], bool]:
    """Class names in id order and whether the label column holds lists of names (several objects per image)."""
    multi_label = isinstance(table.schema[label_column].dataType, ArrayType)
    if given:
        return given.split(","), multi_label
    if multi_label:
        names = table.select(F.explode(label_column).alias("name")).distinct().collect()
        return sorted(r["name"] for r in names), True
    top = table.agg(F.max(label_column)).first()[0]
    return [str(i) for i in range(int(top) + 1)], False


def mask_classes(table: DataFrame) -> list[str]:
    """The class of each mask value from the table's ``mask_classes`` column (one list for the whole table)."""
    if "mask_classes" not in table.columns:
        raise ValueError("the table has no mask_classes column: give --classes, the class of each mask value in order")
    found = table.select("mask_classes").where(F.col("mask_classes").isNotNull()).distinct().limit(2).collect()
    if len(found) != 1:
        raise ValueError(f"the table's rows disagree on mask_classes ({len(found)} lists): give --classes")
    return list(found[0]["mask_classes"])


def _class_ids(names_column: Column, classes: Sequence[str]) -> Column:
    names = F.array(*[F.lit(c) for c in classes])
    return F.filter(F.transform(names_column, lambda n: F.array_position(names, n) - 1), lambda i: i >= 0)
