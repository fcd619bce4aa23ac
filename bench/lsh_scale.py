"""LSH at scale against its peers: ``python -m bench.lsh_scale --sizes 125000,250000 [--peers ...]``.

Synthetic data with planted answers, made from one seed per size:

- token sets (300 tokens an image: 150 from a common vocabulary of 600, as perceptual tokens share many, and 150
  rare), where one image in ten is a near-duplicate of another (a tenth of its tokens replaced: Jaccard ~0.82);
- unit embedding vectors (64-d), where one image in ten has a planted neighbour at cosine ~0.95.

SimHash settings grow with the size, as LSH needs them to (``--sim-shape auto``): for each number of rows (bits a
band) from ``ceil(log2(n))`` up, the fewest bands that find a cosine-0.95 neighbour with probability 0.96; of those
shapes the one with the least expected work (a bucket row a band, and the unrelated images sharing its bucket by
chance, a scored pair costing about six bucket rows here: 32 x 22 at 250,000, 40 x 24 at 1,000,000).

Per size and path: wall time, peak memory (anonymous resident memory of this process and its children: the JVM and
the Python workers; not memory-mapped files) and recall. A path whose memory passes ``--memory-gib`` is stopped
there (this machine has no swap: past its memory the kernel kills processes). Paths:

- ``lakelens``: the jobs.index transforms in Spark ``local[N]``: MinHash in the signature UDF (datasketch batch
  API), datasketch's band keys, the distributed candidate join (screened by the hash values' low bits), exact
  verification; SimHash buckets, exact cosine, top-k, each result written to Parquet as the job writes its tables;
- ``datasketch``: ``MinHash.bulk`` (10,000 sets at a time) then ``MinHashLSH`` insert all, query all, in one process;
- ``mllib``: Spark MLlib ``MinHashLSH.approxSimilarityJoin`` on the token sets as sparse vectors, and
  ``BucketedRandomProjectionLSH.approxSimilarityJoin`` on the vectors at the planted neighbours' distance;
- ``lakelens-exact``: similar images only, as ``index.similar.method: exact`` (the job's default) ranks them: blocked
  matrix products in Spark, each image's exact top 10;
- ``exact``: numpy brute force over the vectors (top 10 by cosine, blocked matrix products).

Recall: near-duplicates = planted pairs found (verified Jaccard >= the threshold); similar = planted neighbours in
the top 10, and recall@10 against the exact top 10 of 1,000 sampled images. A path that exceeds ``--limit-s`` at
a size is stopped there and the larger sizes are skipped for it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing as mp
import os
import tempfile
import threading
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
import psutil
import pyarrow as pa
import pyarrow.parquet as pq

from lakelens.config import Config, NearDupConfig, SimilarConfig, load_config

COMMON, RARE_UNIVERSE, TOKENS, DIM = 600, 1 << 30, 300, 64
# Spark's joins do the work here: the JVM's full JIT tiers (1.2-1.7x at 250,000), its default collector and adaptive
# execution, not local.yaml's settings for a laptop's night.
LARGE_LOCAL = (
    "spark.conf.spark.driver.extraJavaOptions=-XX:TieredStopAtLevel=4",
    "spark.conf.spark.sql.adaptive.enabled=true",
)


def spark_config(tmp: str, cores: int, driver_memory: str, *more: str) -> Config:
    """The config of a Spark path: ``local[cores]``, a lake in ``tmp``, the driver's memory, :data:`LARGE_LOCAL`."""
    return load_config(overrides=[f"spark.master=local[{cores}]", f"lake.root={tmp}/lake",
                                  f"spark.conf.spark.driver.memory={driver_memory}", *LARGE_LOCAL, *more])  # fmt: skip


def token_sets(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """[n, 300] int64 tokens and the planted pairs [m, 2] (i, j): j is a near-duplicate of i."""
    rng = np.random.default_rng(seed)
    common = np.stack([rng.choice(COMMON, TOKENS // 2, replace=False) for _ in range(n)])
    tokens = np.concatenate([common, COMMON + rng.integers(0, RARE_UNIVERSE, (n, TOKENS // 2))], axis=1)
    copies = rng.choice(n, n // 5, replace=False)
    pairs = copies.reshape(-1, 2)  # (original, copy)
    replaced = rng.random((len(pairs), TOKENS)) < 0.1
    fresh = COMMON + rng.integers(0, RARE_UNIVERSE, (len(pairs), TOKENS))
    tokens[pairs[:, 1]] = np.where(replaced, fresh, tokens[pairs[:, 0]])
    return tokens, pairs


def vectors(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """[n, 64] unit float32 vectors and the planted neighbour pairs [m, 2]."""
    rng = np.random.default_rng(seed + 1)
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    pairs = rng.choice(n, n // 5, replace=False).reshape(-1, 2)
    v[pairs[:, 1]] = v[pairs[:, 0]] + 0.33 * rng.standard_normal((len(pairs), DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True), pairs


def exact_top10(v: np.ndarray, queries: np.ndarray, scores_bytes: int = 1 << 28) -> np.ndarray:
    """The exact top 10 (by cosine, self excluded) of each query row of ``v``, in blocks of queries whose scores
    take at most ``scores_bytes`` (at 1,000,000 rows a block of 4,096 would take 16 GiB)."""
    block = max(1, scores_bytes // (4 * len(v)))
    out = np.empty((len(queries), 10), np.int64)
    for start in range(0, len(queries), block):
        q = queries[start : start + block]
        scores = v[q] @ v.T
        scores[np.arange(len(q)), q] = -np.inf
        top = np.argpartition(-scores, 10, axis=1)[:, :10]
        order = np.argsort(-np.take_along_axis(scores, top, 1), axis=1)
        out[start : start + len(q)] = np.take_along_axis(top, order, 1)
    return out


def pair_codes(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """Unordered pairs of ids below ``n`` as one int64 each, for set operations in numpy."""
    return np.minimum(a, b).astype(np.int64) * n + np.maximum(a, b)


def pair_recall(found: np.ndarray, planted: np.ndarray, n: int) -> float:
    """Share of the planted pairs among the found pairs ([m, 2] id arrays)."""
    return float(np.isin(pair_codes(planted[:, 0], planted[:, 1], n), pair_codes(found[:, 0], found[:, 1], n)).mean())


def neighbour_recall(top: np.ndarray, planted: np.ndarray, n: int) -> float:
    """Share of planted neighbours in the top lists, both ways; ``top`` holds (image, neighbour) rows."""
    listed = top[:, 0].astype(np.int64) * n + top[:, 1]
    wanted = np.concatenate(
        [planted[:, 0].astype(np.int64) * n + planted[:, 1], planted[:, 1].astype(np.int64) * n + planted[:, 0]]
    )
    return float(np.isin(wanted, listed).mean())


def recall_at_10(top: np.ndarray, truth: np.ndarray, sample: np.ndarray, n: int) -> float:
    """Mean share of each sampled image's exact top 10 found in its top list."""
    listed = top[:, 0].astype(np.int64) * n + top[:, 1]
    wanted = sample.astype(np.int64)[:, None] * n + truth
    return float(np.isin(wanted, listed).mean())


def simhash_shape(n: int, cosine: float = 0.95, recall: float = 0.96, pair_cost: float = 6.0) -> tuple[int, int]:
    """(bands, rows) for ``n`` images: of the shapes whose fewest bands find ``cosine`` at ``recall``, the one with
    the least work an image: a bucket row a band, plus the unrelated images sharing that bucket by chance
    (``n / 2**rows``, half of them this image's to score), each scored pair costing ``pair_cost`` bucket rows."""

    def shape(rows: int) -> tuple[int, int]:
        p = (1 - np.arccos(cosine) / np.pi) ** rows
        return int(np.ceil(np.log(1 - recall) / np.log(1 - p))), rows

    def work(bands: int, rows: int) -> float:
        return bands * (1 + pair_cost * n / 2**rows / 2)

    least = max(8, int(np.ceil(np.log2(n))))
    return min((shape(rows) for rows in range(least, least + 8)), key=lambda s: work(*s))


def rows_of(matrix: np.ndarray) -> pa.FixedSizeListArray:
    """An [n, d] array as n Arrow lists of d values, without a Python object per row."""
    return pa.FixedSizeListArray.from_arrays(pa.array(matrix.ravel()), matrix.shape[1])


def read_ids(path: str, columns: list[str]) -> np.ndarray:
    """The id columns of a Parquet folder as an [m, len(columns)] int64 array."""
    table = pq.read_table(path, columns=columns)
    return np.stack([table.column(c).to_numpy().astype(np.int64) for c in columns], axis=1)


class PeakMemory:
    """Peak resident anonymous memory of this process and its children, sampled every 0.2 s while in the block:
    file-backed pages (Spark's memory-mapped shuffle files, libraries) are left out, since the kernel drops them
    under pressure rather than run out of memory.

    Past ``limit`` bytes the children are killed and ``over`` is set: with no swap, the kernel would otherwise pick
    what to kill.
    """

    def __init__(self, limit: float) -> None:
        self.limit, self.peak, self.over = limit, 0, False

    def __enter__(self) -> PeakMemory:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        me = psutil.Process()
        while not self._stop.wait(0.2):
            children = me.children(recursive=True)
            total = 0
            for p in [me, *children]:
                try:
                    used = p.memory_info()
                    total += used.rss - used.shared
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            if total > self.limit and not self.over:
                self.over = True
                kill(children)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def kill(processes: list[psutil.Process]) -> None:
    for p in processes:
        try:
            p.kill()
        except psutil.Error:
            pass


def run_lakelens(n: int, seed: int, cores: int, nd: NearDupConfig, sim: SimilarConfig) -> dict:
    from lakelens.lsh import MinHashParams, SimHashParams
    from lakelens.lsh_spark import (
        Screen,
        both_directions,
        transform_bucket_rows,
        transform_candidates,
        transform_cosine,
        transform_jaccard,
        transform_top_k,
    )
    from lakelens.spark import build_session
    from udfs.signatures import SIMHASH_UDF_SCHEMA, make_simhash_udf

    with tempfile.TemporaryDirectory(prefix="lakelens-scale-") as tmp:
        cfg = spark_config(tmp, cores, "12g", f"spark.conf.spark.sql.shuffle.partitions={4 * cores}")
        ids = np.char.mod("%08d", np.arange(n))
        tokens, planted = token_sets(n, seed)
        pq.write_table(pa.table({"image_id": ids, "tokens": rows_of(tokens)}), f"{tmp}/tokens.parquet")
        del tokens
        vecs, neighbours = vectors(n, seed)
        pq.write_table(pa.table({"image_id": ids, "vector": rows_of(vecs)}), f"{tmp}/vectors.parquet")
        del ids
        spark = build_session(cfg)
        params = MinHashParams(num_perm=nd.num_perm, seed=nd.seed, threshold=nd.lsh_threshold, recipe=nd.recipe)
        started = time.perf_counter()
        sets = spark.read.parquet(f"{tmp}/tokens.parquet").repartition(8 * cores)

        def sign(frames):
            from lakelens.lsh import minhash_band_keys, minhash_signatures

            for f in frames:
                sig = minhash_signatures([[int(t).to_bytes(4, "little") for t in row] for row in f["tokens"]], params)
                yield pd.DataFrame({"image_id": f["image_id"], "minhash": list(sig.astype(np.int64)),
                                    "keys": minhash_band_keys(sig, *params.bands)})  # fmt: skip

        signed = sets.mapInPandas(sign, "image_id string, minhash array<bigint>, keys array<binary>").cache()
        screen = Screen.at(params.num_perm, nd.threshold)
        found = transform_candidates(screen.bucket_rows(signed, params.params_id), None, 1000, screen)
        transform_jaccard(found.pairs, signed, nd.threshold).write.parquet(f"{tmp}/pairs")
        near_s = time.perf_counter() - started
        print(json.dumps({"size": n, "path": "lakelens", "near_dup_s": near_s, "similar": "next"}), flush=True)

        started = time.perf_counter()
        params = SimHashParams(model="bench", dim=DIM, bands=sim.bands, rows=sim.rows, seed=sim.seed)
        vec = spark.read.parquet(f"{tmp}/vectors.parquet").repartition(8 * cores).cache()
        sbuckets = transform_bucket_rows(vec.mapInPandas(make_simhash_udf(params), SIMHASH_UDF_SCHEMA), "simhash", "b")
        sfound = transform_candidates(sbuckets, None, 1000)
        top = transform_top_k(both_directions(transform_cosine(sfound.pairs, vec), "cosine"), sim.k)
        top.write.parquet(f"{tmp}/top")
        similar_s = time.perf_counter() - started
        hot = found.hot.count() + sfound.hot.count()
        spark.stop()
        got = read_ids(f"{tmp}/pairs", ["image_id_a", "image_id_b"])
        lists = read_ids(f"{tmp}/top", ["image_id", "neighbor_id"])
    sample = np.random.default_rng(seed).choice(n, min(1000, n), replace=False)
    return {
        "near_dup_s": near_s, "near_dup_recall": pair_recall(got, planted, n), "near_dup_pairs": len(got),
        "similar_s": similar_s, "simhash": f"{sim.bands}x{sim.rows}",
        "similar_planted_recall": neighbour_recall(lists, neighbours, n),
        "similar_recall_at_10": recall_at_10(lists, exact_top10(vecs, sample), sample, n), "hot_buckets": hot,
    }  # fmt: skip


def run_lakelens_exact(n: int, seed: int, cores: int, sim: SimilarConfig) -> dict:
    """The similar images of ``index.similar.method: exact`` (jobs.index's default): blocked matrix products in
    Spark, recall 1 by construction; no near-duplicate half."""
    from pyspark.sql import functions as F

    from lakelens.knn_spark import transform_exact_candidates
    from lakelens.lsh_spark import transform_top_k
    from lakelens.spark import build_session

    with tempfile.TemporaryDirectory(prefix="lakelens-exact-") as tmp:
        cfg = spark_config(tmp, cores, "12g")
        vecs, neighbours = vectors(n, seed)
        ids = np.char.mod("%08d", np.arange(n))
        pq.write_table(pa.table({"image_id": ids, "vector": rows_of(vecs)}), f"{tmp}/vectors.parquet")
        spark = build_session(cfg)
        started = time.perf_counter()
        vec = spark.read.parquet(f"{tmp}/vectors.parquet").cache()
        floored = vec.withColumn("floor", F.lit(float("inf")))
        found = transform_exact_candidates(vec, n, floored, n, sim.k, sim.block)
        transform_top_k(found, sim.k).write.parquet(f"{tmp}/top")
        similar_s = time.perf_counter() - started
        spark.stop()
        lists = read_ids(f"{tmp}/top", ["image_id", "neighbor_id"])
    sample = np.random.default_rng(seed).choice(n, min(1000, n), replace=False)
    return {
        "similar_s": similar_s, "similar_planted_recall": neighbour_recall(lists, neighbours, n),
        "similar_recall_at_10": recall_at_10(lists, exact_top10(vecs, sample), sample, n),
    }  # fmt: skip


def run_datasketch(n: int, seed: int, nd: NearDupConfig, chunk: int = 10_000) -> dict:
    from datasketch import MinHash, MinHashLSH

    tokens, planted = token_sets(n, seed)
    started = time.perf_counter()
    hashes = []
    for at in range(0, n, chunk):
        sets = [[int(t).to_bytes(4, "little") for t in row] for row in tokens[at : at + chunk]]
        hashes += MinHash.bulk(sets, num_perm=nd.num_perm, seed=nd.seed)
    lsh = MinHashLSH(threshold=nd.lsh_threshold, num_perm=nd.num_perm)
    with lsh.insertion_session() as session:
        for i, m in enumerate(hashes):
            session.insert(i, m)
    got = []
    for i, m in enumerate(hashes):
        for j in lsh.query(m):
            if j > i and m.jaccard(hashes[j]) >= nd.threshold:
                got.append((i, j))
    seconds = time.perf_counter() - started
    found = np.array(got, np.int64).reshape(-1, 2)
    return {"near_dup_s": seconds, "near_dup_recall": pair_recall(found, planted, n), "near_dup_pairs": len(found)}


def run_mllib(n: int, seed: int, cores: int, threshold: float) -> dict:
    from pyspark.ml.feature import BucketedRandomProjectionLSH, MinHashLSH
    from pyspark.ml.linalg import SparseVector, Vectors

    from lakelens.spark import build_session

    tokens, planted = token_sets(n, seed)
    vecs, neighbours = vectors(n, seed)
    with tempfile.TemporaryDirectory(prefix="lakelens-mllib-") as tmp:
        cfg = spark_config(tmp, cores, "16g")
        spark = build_session(cfg)
        size = COMMON + RARE_UNIVERSE
        rows = [(i, SparseVector(size, sorted(set(map(int, t))), [1.0] * len(set(map(int, t)))))
                for i, t in enumerate(tokens)]  # fmt: skip
        sets = spark.createDataFrame(rows, ["id", "features"]).repartition(8 * cores).cache()
        sets.count()
        started = time.perf_counter()
        model = MinHashLSH(inputCol="features", outputCol="hashes", numHashTables=5, seed=1).fit(sets)
        joined = model.approxSimilarityJoin(sets, sets, 1 - threshold, distCol="d")
        pairs = joined.selectExpr("datasetA.id AS a", "datasetB.id AS b").where("a < b").collect()
        got = np.array(pairs, np.int64).reshape(-1, 2)
        near_s = time.perf_counter() - started
        dense = spark.createDataFrame([(i, Vectors.dense(v.tolist())) for i, v in enumerate(vecs)], ["id", "features"])
        dense = dense.repartition(8 * cores).cache()
        dense.count()
        started = time.perf_counter()
        brp = BucketedRandomProjectionLSH(inputCol="features", outputCol="hashes", bucketLength=1.0, numHashTables=5)
        joined = brp.fit(dense).approxSimilarityJoin(dense, dense, 0.45, distCol="d")  # cosine ~0.9
        pairs = joined.selectExpr("datasetA.id AS a", "datasetB.id AS b").where("a < b").collect()
        close = np.array(pairs, np.int64).reshape(-1, 2)
        similar_s = time.perf_counter() - started
        spark.stop()
    return {"near_dup_s": near_s, "near_dup_recall": pair_recall(got, planted, n), "near_dup_pairs": len(got),
            "similar_s": similar_s, "similar_planted_recall": pair_recall(close, neighbours, n)}  # fmt: skip


def run_exact(n: int, seed: int) -> dict:
    vecs, neighbours = vectors(n, seed)
    started = time.perf_counter()
    top = exact_top10(vecs, np.arange(n))
    seconds = time.perf_counter() - started
    lists = np.stack([np.repeat(np.arange(n), 10), top.ravel()], axis=1)
    return {"similar_s": seconds, "similar_planted_recall": neighbour_recall(lists, neighbours, n)}


def measured(fn: Callable[[], dict], limit_s: float, limit_gib: float) -> dict:
    """Run ``fn`` in a child process (so its memory is its own) within time and memory limits; add wall time and peak
    memory."""
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=lambda: queue.put(fn()))
    started = time.perf_counter()
    with PeakMemory(limit_gib * 2**30) as memory:
        child.start()
        child.join(limit_s)
        if child.is_alive():
            kill([*psutil.Process(child.pid).children(recursive=True), psutil.Process(child.pid)])
            child.join()
            return {"finished": False, "limit_s": limit_s}
    if memory.over:
        return {"finished": False, "limit_gib": limit_gib, "after_s": time.perf_counter() - started}
    result = queue.get() if not queue.empty() else {"finished": False, "exit_code": child.exitcode}
    return {"finished": True, **result, "wall_s": time.perf_counter() - started, "peak_gib": memory.peak / 2**30}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="125000,250000,500000,1000000")
    parser.add_argument("--peers", default="lakelens,datasketch,mllib,exact")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--sim-shape", default="auto", help="SimHash BANDSxROWS, or auto: grown with the size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit-s", type=float, default=1800)
    parser.add_argument("--memory-gib", type=float, default=21, help="stop a path whose memory passes this")
    args = parser.parse_args()
    defaults = load_config().index
    nd, similar = defaults.near_dup, defaults.similar

    def sim(n: int) -> SimilarConfig:
        bands, rows = simhash_shape(n) if args.sim_shape == "auto" else map(int, args.sim_shape.split("x"))
        return dataclasses.replace(similar, bands=bands, rows=rows)

    runners = {
        "lakelens": lambda n: run_lakelens(n, args.seed, args.cores, nd, sim(n)),
        "lakelens-exact": lambda n: run_lakelens_exact(n, args.seed, args.cores, similar),
        "datasketch": lambda n: run_datasketch(n, args.seed, nd),
        "mllib": lambda n: run_mllib(n, args.seed, args.cores, nd.threshold),
        "exact": lambda n: run_exact(n, args.seed),
    }
    stopped: set[str] = set()
    for n in (int(s) for s in args.sizes.split(",")):
        for peer in args.peers.split(","):
            if peer in stopped:
                continue
            result = measured(lambda peer=peer, n=n: runners[peer](n), args.limit_s, args.memory_gib)
            if not result["finished"]:
                stopped.add(peer)
            print(json.dumps({"size": n, "path": peer, **result}), flush=True)


if __name__ == "__main__":
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    main()
