"""Exact top-k in Spark by blocked matrix products, against a lake's LSH ``similar`` table:
``python -m bench.exact_top_k --lake DIR [--k 10] [--block 2048] [--new 1000]``.

A design study for the similar-image stage (not what jobs.index runs): the embeddings are cut into blocks of
``--block`` vectors, every (left block, right block) pair is one row of a cross join, and a ``mapInPandas``
function multiplies the two blocks and keeps each left image's k best; ``transform_top_k`` then merges the blocks.
Prints the time of a full top-k (twice: the first pays the Python workers' start; nothing is cached between), the
LSH table's recall@k against it, and the time of the top-k of ``--new`` images against all (an increment's new
lists; the old lists' update is not timed).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lakelens.config import load_config
from lakelens.lake import read_table
from lakelens.lsh_spark import transform_top_k
from lakelens.schemas import EMBEDDINGS, SIMILAR
from lakelens.spark import build_session

SCORED = T.StructType(
    [T.StructField(n, t) for n, t in (("image_id", T.StringType()), ("neighbor_id", T.StringType()),
                                      ("cosine", T.FloatType()))]
)  # fmt: skip


def blocked(vectors: DataFrame, size: int, side: str) -> DataFrame:
    """One row per block of about ``size`` vectors: (``<side>_ids``, ``<side>_vectors``)."""
    blocks = max(1, -(-vectors.count() // size))
    keyed = vectors.withColumn("block", F.abs(F.xxhash64("image_id")) % blocks)
    return keyed.groupBy("block").agg(F.collect_list("image_id").alias(f"{side}_ids"),
                                      F.collect_list("vector").alias(f"{side}_vectors"))  # fmt: skip


def block_top_k(k: int):
    def top(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for frame in frames:
            for row in frame.itertuples(index=False):
                left, right = np.asarray(row.l_ids), np.asarray(row.r_ids)
                scores = np.stack(row.l_vectors).astype(np.float32) @ np.stack(row.r_vectors).astype(np.float32).T
                scores[left[:, None] == right[None, :]] = -np.inf  # an image is not its own neighbour
                kept = min(k, scores.shape[1])
                cols = np.argpartition(-scores, kept - 1, axis=1)[:, :kept].ravel()
                rows = np.repeat(np.arange(len(left)), kept)
                cosine = scores[rows, cols]
                ok = np.isfinite(cosine)
                yield pd.DataFrame({"image_id": left[rows[ok]], "neighbor_id": right[cols[ok]], "cosine": cosine[ok]})

    return top


def exact_top_k(queries: DataFrame, vectors: DataFrame, k: int, block: int) -> DataFrame:
    pairs = blocked(queries, block, "l").crossJoin(blocked(vectors, block, "r"))
    cores = queries.sparkSession.sparkContext.defaultParallelism
    scored = pairs.select("l_ids", "l_vectors", "r_ids", "r_vectors").repartition(4 * cores)
    return transform_top_k(scored.mapInPandas(block_top_k(k), SCORED), k)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lake", required=True)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--block", type=int, default=2048)
    parser.add_argument("--new", type=int, default=1000)
    parser.add_argument("--master", default="local[*]")
    args = parser.parse_args()
    cfg = load_config(overrides=[f"lake.root={args.lake}", f"spark.master={args.master}"])
    spark = build_session(cfg)
    vectors = read_table(spark, cfg, EMBEDDINGS).where(F.col("vector").isNotNull()).select("image_id", "vector")
    vectors = vectors.cache()
    n = vectors.count()
    print(f"{n} vectors")
    for attempt in ("first", "second"):
        started = time.perf_counter()
        rows = exact_top_k(vectors, vectors, args.k, args.block).count()
        print(f"exact top-{args.k} of all ({attempt}): {rows} rows in {time.perf_counter() - started:.1f}s")
    top = exact_top_k(vectors, vectors, args.k, args.block)
    lsh = read_table(spark, cfg, SIMILAR).select("image_id", "neighbor_id")
    found = top.select("image_id", "neighbor_id").join(lsh, ["image_id", "neighbor_id"]).count()
    print(f"recall@{args.k} of the lake's similar table against exact: {found / rows:.4f}")
    new = vectors.orderBy(F.xxhash64("image_id")).limit(args.new).cache()
    new.count()
    started = time.perf_counter()
    rows = exact_top_k(new, vectors, args.k, args.block).count()
    print(f"exact top-{args.k} of {args.new} images against all: {rows} rows in {time.perf_counter() - started:.1f}s")
    spark.stop()


if __name__ == "__main__":
    main()
