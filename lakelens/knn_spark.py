"""Exact top-k candidates in Spark: vectors cut into blocks, every (query block, vector block) pair one row of a cross
join, and :func:`lakelens.knn.block_candidates` on each. Work grows as queries x vectors x dim; nothing is collected
to the driver.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lakelens.knn import block_candidates

SCORED = T.StructType(
    [
        T.StructField("image_id", T.StringType(), False),
        T.StructField("neighbor_id", T.StringType(), False),
        T.StructField("cosine", T.FloatType(), False),
    ]
)
BLOCK_PAIRS_PER_TASK = 4  # each block pair row carries two blocks of vectors (2 x 0.5 MiB at 2,048 x 64 floats)


def _blocks(rows: DataFrame, n: int, size: int, side: str, columns: list[str]) -> tuple[DataFrame, int]:
    """One row per block of about ``size`` of the ``n`` rows: each of ``columns`` as a list ``<side>_<column>``."""
    count = max(1, -(-n // size))
    keyed = rows.withColumn("block", F.pmod(F.xxhash64("image_id"), F.lit(count)))
    lists = [F.collect_list(c).alias(f"{side}_{c}") for c in columns]
    return keyed.groupBy("block").agg(*lists).drop("block"), count


def _scorer(k: int) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    def score(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for frame in frames:
            for row in frame.itertuples(index=False):
                image, neighbor, cosine = block_candidates(
                    np.asarray(row.l_image_id, dtype=object), np.stack(row.l_vector),
                    np.asarray(row.r_image_id, dtype=object), np.stack(row.r_vector),
                    np.asarray(row.r_floor, np.float64), k,
                )  # fmt: skip
                yield pd.DataFrame({"image_id": image, "neighbor_id": neighbor, "cosine": cosine})

    return score


def transform_exact_candidates(
    queries: DataFrame, n_queries: int, vectors: DataFrame, n_vectors: int, k: int, block: int
) -> DataFrame:
    """(image_id, neighbor_id, cosine) rows that contain the exact top k of every query and every change that the
    queries make to the other vectors' top-k lists.

    Args:
        queries: (image_id, vector) of the images whose top k is computed (the new ones; all in a full build).
        vectors: (image_id, vector, floor) of every image, queries included; ``floor`` is an image's current k-th
            cosine, -inf where it has fewer than k neighbours yet (any query may join its list), +inf for queries.
        n_queries, n_vectors: their row counts, to size the blocks.
    """
    left, n_left = _blocks(queries, n_queries, block, "l", ["image_id", "vector"])
    floored = vectors.withColumn("floor", F.col("floor").cast("double"))
    right, n_right = _blocks(floored, n_vectors, block, "r", ["image_id", "vector", "floor"])
    cores = queries.sparkSession.sparkContext.defaultParallelism
    tasks = max(cores, -(-n_left * n_right // BLOCK_PAIRS_PER_TASK))
    pairs = left.crossJoin(right).repartition(tasks)
    return pairs.mapInPandas(_scorer(k), SCORED)
