"""The exact top-k of jobs.index (``index.similar.method: exact``) on a lake's embeddings or on synthetic vectors:
``python -m bench.exact_top_k (--lake DIR | --synthetic N) [--k 10] [--block 2048] [--new 1000] [--repeat 2]``.

Times ``lakelens.knn_spark.transform_exact_candidates`` followed by ``transform_top_k`` (what jobs.index runs, without
its table reads and writes) for every vector against all, ``--repeat`` times (the first pays the Python workers'
start; nothing is cached between), then, unless ``--new 0``, for ``--new`` vectors against all with the others' k-th
cosines as floors (a nightly increment). With ``--lake``, also the recall@k of the lake's LSH ``similar`` rows, if
it has any, against the exact lists. ``--synthetic N`` makes N random 64-d unit vectors around 1,000 centres.
"""

from __future__ import annotations

import argparse
import time

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakelens.config import load_config
from lakelens.knn_spark import transform_exact_candidates
from lakelens.lake import read_table
from lakelens.lsh_spark import transform_top_k
from lakelens.schemas import EMBEDDINGS, SIMILAR
from lakelens.spark import build_session

DIM = 64


def synthetic(spark: SparkSession, n: int, centres: int = 1000) -> DataFrame:
    """``n`` unit vectors, each a random centre (of ``centres``) plus noise: a centre's members at cosine ~0.57."""
    centre = F.pmod(F.xxhash64("id"), F.lit(centres))
    raw = [F.randn(seed=i) * 0.5 + F.pmod(F.hash(centre, F.lit(i)), F.lit(2001)) / 1000 - 1 for i in range(DIM)]
    vectors = spark.range(n).select(F.format_string("img%09d", "id").alias("image_id"), F.array(*raw).alias("raw"))
    norm = F.sqrt(F.aggregate("raw", F.lit(0.0), lambda acc, x: acc + x * x))
    return vectors.select("image_id", F.transform("raw", lambda x: (x / norm).cast("float")).alias("vector"))


def top_k(queries: DataFrame, n_queries: int, floored: DataFrame, n: int, k: int, block: int) -> DataFrame:
    return transform_top_k(transform_exact_candidates(queries, n_queries, floored, n, k, block), k)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--lake")
    source.add_argument("--synthetic", type=int, help="this many random vectors instead of a lake's")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--block", type=int, default=2048)
    parser.add_argument("--new", type=int, default=1000, help="images of the incremental run (0: none)")
    parser.add_argument("--repeat", type=int, default=2, help="timed runs of the top-k of all")
    parser.add_argument("--master", default="local[*]")
    args = parser.parse_args()
    overrides = [f"spark.master={args.master}"] + ([f"lake.root={args.lake}"] if args.lake else [])
    cfg = load_config(overrides=overrides)
    spark = build_session(cfg)
    if args.lake:
        vectors = read_table(spark, cfg, EMBEDDINGS).where(F.col("vector").isNotNull()).select("image_id", "vector")
    else:
        vectors = synthetic(spark, args.synthetic)
    vectors = vectors.cache()
    n = vectors.count()
    print(f"{n} vectors")
    queries = vectors.withColumn("floor", F.lit(float("inf")))
    for attempt in range(1, args.repeat + 1):
        started = time.perf_counter()
        rows = top_k(vectors, n, queries, n, args.k, args.block).count()
        print(
            f"exact top-{args.k} of all (run {attempt}): {rows} rows in {time.perf_counter() - started:.1f}s",
            flush=True,
        )
    if args.lake:
        exact = top_k(vectors, n, queries, n, args.k, args.block)
        lsh = read_table(spark, cfg, SIMILAR).where(F.col("params_id").startswith("simhash"))
        found = exact.join(lsh.select("image_id", "neighbor_id"), ["image_id", "neighbor_id"]).count()
        if found:
            print(f"recall@{args.k} of the lake's LSH similar rows against exact: {found / (n * args.k):.4f}")
    if args.new == 0:
        spark.stop()
        return
    new = vectors.orderBy(F.xxhash64("image_id")).limit(args.new).cache()
    n_new = new.count()
    before = vectors.join(new, "image_id", "left_anti").withColumn("floor", F.lit(float("inf")))
    lists = top_k(before, n - n_new, before, n - n_new, args.k, args.block)
    floors = lists.groupBy("image_id").agg(F.min("cosine").alias("floor"))  # every old image has k: n > k
    floored = vectors.join(floors, "image_id", "left").fillna(float("inf"), ["floor"]).cache()
    floored.count()
    started = time.perf_counter()
    rows = top_k(new, n_new, floored, n, args.k, args.block).count()
    seconds = time.perf_counter() - started
    print(f"{n_new} new against all, old lists updated: {rows} rows of top-{args.k} in {seconds:.1f}s")
    spark.stop()


if __name__ == "__main__":
    main()
