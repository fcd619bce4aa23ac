"""Batch search by text, speed: ``python -m bench.search_throughput [--images 100000] [--queries 1000]``.

The ranking ``jobs.search --queries`` runs (``stages.search.transform_search_results``: the query vectors go with
the task to every partition of the image vectors, each partition keeps every query's best k, a window ranks them)
on ``--images`` unit vectors of ``--dim`` floats in Spark ``local[N]``, against the same ranking in one process
with numpy (``stages.search.best_k`` over the whole matrix), side by side in one run. Vectors are random (the cost of
exact ranking does not depend on what they hold); both rankings are checked equal. Prints scores (queries x images)
per second of each and their ratio.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession

from models.registry import Manifest
from stages.search import best_k, query_id, transform_search_results


def unit_rows(n: int, dim: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()
    images, queries = unit_rows(args.images, args.dim, 1), unit_rows(args.queries, args.dim, 2)
    ids = np.asarray([f"img{i:07d}" for i in range(args.images)], dtype=object)
    texts = pd.DataFrame({"query": [f"query {i}" for i in range(args.queries)]})
    texts["query_id"] = texts["query"].map(query_id)

    started = time.perf_counter()
    local = best_k(queries, ids, images, args.k)
    numpy_s = time.perf_counter() - started

    spark = (
        SparkSession.builder.master(f"local[{args.cores}]")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.shuffle.partitions", str(args.cores))
        .getOrCreate()
    )
    frame = pd.DataFrame({"image_id": ids, "vector": list(images)})
    vectors = spark.createDataFrame(frame, "image_id string, vector array<float>").repartition(args.cores * 4)
    vectors = vectors.cache()
    vectors.count()
    model = Manifest.new("bench", "text_image", {}, version="v1")
    started = time.perf_counter()
    results = transform_search_results(vectors, texts, queries, args.k, model, datetime.now(UTC)).toPandas()
    spark_s = time.perf_counter() - started
    spark.stop()

    results = results.sort_values(["query_id", "rank"])
    by_query = {q: rows["image_id"].tolist() for q, rows in results.groupby("query_id")}
    same = all(by_query[q] == [i for i, _ in hits] for q, hits in zip(texts["query_id"], local, strict=True))
    scores = args.images * args.queries
    print(json.dumps({
        "images": args.images, "queries": args.queries, "dim": args.dim, "k": args.k, "cores": args.cores,
        "spark_seconds": round(spark_s, 2), "spark_scores_per_s": round(scores / spark_s),
        "numpy_one_process_seconds": round(numpy_s, 2), "numpy_scores_per_s": round(scores / numpy_s),
        "spark_vs_numpy": round(numpy_s / spark_s, 3), "same_rankings": same,
        "result_rows": len(results),
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
