"""Exact top-k candidates in Spark: the query vectors are broadcast (in chunks of at most ``QUERY_CHUNK_FLOATS``),
every vector stays where its partition is, and :func:`lakelens.knn.block_candidates` runs on each (query block,
vector block) inside the tasks. Each vector crosses into Python once per chunk; work grows as queries x vectors x
dim.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd
from pyspark import Broadcast
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lakelens.knn import block_candidates
from lakelens.pyworker import worker_task
from lakelens.spark import local_frame

SCORED = T.StructType(
    [
        T.StructField("image_id", T.StringType(), False),
        T.StructField("neighbor_id", T.StringType(), False),
        T.StructField("cosine", T.FloatType(), False),
    ]
)
QUERY_CHUNK_FLOATS = 1 << 24  # 64 MiB of float32 query vectors per broadcast (262,144 at 64-d)


def _scorer(queries: Broadcast, k: int, block: int) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    def score(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        query_ids, query_vectors = queries.value
        for frame in frames:
            ids = frame["image_id"].to_numpy(dtype=object)
            vectors = np.stack(frame["vector"].to_numpy()) if len(frame) else np.zeros((0, 0), np.float32)
            floors = frame["floor"].to_numpy(dtype=np.float64)
            for start in range(0, len(ids), block):
                right = slice(start, start + block)
                for left in range(0, len(query_ids), block):
                    image, neighbor, cosine = block_candidates(
                        query_ids[left : left + block], query_vectors[left : left + block],
                        ids[right], vectors[right], floors[right], k,
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
        n_queries, n_vectors: their row counts, to size the chunks and the tasks.
        block: vectors per matrix product (a product's scores: block^2 floats).
    """
    spark = queries.sparkSession
    tasks = max(spark.sparkContext.defaultParallelism, -(-n_vectors // block))
    spread = vectors.select("image_id", "vector", F.col("floor").cast("double")).repartition(tasks)
    if n_queries == 0:
        return local_frame(spark, [], SCORED)
    dim = len(queries.first()["vector"])
    chunks = max(1, -(-n_queries * dim // QUERY_CHUNK_FLOATS))
    keyed = queries.select("image_id", "vector", F.pmod(F.xxhash64("image_id"), F.lit(chunks)).alias("chunk"))
    parts = []
    for chunk in range(chunks):
        rows = keyed.where(F.col("chunk") == chunk).select("image_id", "vector").toPandas()
        matrix = np.stack(rows["vector"].to_numpy()).astype(np.float32) if len(rows) else np.zeros((0, dim))
        shipped = spark.sparkContext.broadcast((rows["image_id"].to_numpy(dtype=object), matrix))
        parts.append(spread.mapInPandas(worker_task(_scorer(shipped, k, block)), SCORED))
    return functools.reduce(DataFrame.unionByName, parts)
