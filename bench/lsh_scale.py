"""LSH at scale against its peers: ``python -m bench.lsh_scale --sizes 125000,250000 [--peers ...]``.

Synthetic data with planted answers, made from one seed per size:

- token sets (300 tokens an image: 150 from a common vocabulary of 600, as perceptual tokens share many, and 150
  rare), where one image in ten is a near-duplicate of another (a tenth of its tokens replaced: Jaccard ~0.82);
- unit embedding vectors (64-d), where one image in ten has a planted neighbour at cosine ~0.95.

Per size and path: wall time, peak memory (resident set of this process and its children: the JVM and the
Python workers) and recall. Paths:

- ``lakelens``: the jobs.index transforms in Spark ``local[N]``: MinHash in the signature UDF (datasketch batch
  API), datasketch's band keys, the distributed candidate join, exact verification; SimHash buckets, exact cosine,
  top-k. Nothing is written (a ``noop`` sink), so the figures are the computation's;
- ``datasketch``: ``MinHash.bulk`` then ``MinHashLSH`` insert all, query all, in one process;
- ``mllib``: Spark MLlib ``MinHashLSH.approxSimilarityJoin`` on the token sets as sparse vectors, and
  ``BucketedRandomProjectionLSH.approxSimilarityJoin`` on the vectors at the planted neighbours' distance;
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

from lakelens.config import NearDupConfig, SimilarConfig, load_config

COMMON, RARE_UNIVERSE, TOKENS, DIM = 600, 1 << 30, 300, 64


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


def exact_top10(v: np.ndarray, queries: np.ndarray, block: int = 4096) -> np.ndarray:
    """The exact top 10 (by cosine, self excluded) of each query row of ``v``."""
    out = np.empty((len(queries), 10), np.int64)
    for start in range(0, len(queries), block):
        q = queries[start : start + block]
        scores = v[q] @ v.T
        scores[np.arange(len(q)), q] = -np.inf
        top = np.argpartition(-scores, 10, axis=1)[:, :10]
        order = np.argsort(-np.take_along_axis(scores, top, 1), axis=1)
        out[start : start + len(q)] = np.take_along_axis(top, order, 1)
    return out


def pair_recall(found: set[tuple[int, int]], planted: np.ndarray) -> float:
    want = {(min(a, b), max(a, b)) for a, b in planted.tolist()}
    return len(want & found) / len(want)


def neighbour_recall(top: dict[int, list[int]], planted: np.ndarray) -> float:
    hits = sum((b in top.get(a, [])) + (a in top.get(b, [])) for a, b in planted.tolist())
    return hits / (2 * len(planted))


def recall_at_10(top: dict[int, list[int]], truth: np.ndarray, sample: np.ndarray) -> float:
    found = [len(set(top.get(int(q), [])) & set(t.tolist())) / 10 for q, t in zip(sample, truth, strict=True)]
    return float(np.mean(found))


class PeakMemory:
    """Peak resident memory of this process and its children, sampled every 0.2 s while in the block."""

    def __enter__(self) -> PeakMemory:
        self.peak, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        me = psutil.Process()
        while not self._stop.wait(0.2):
            total = 0
            for p in [me, *me.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def run_lakelens(n: int, seed: int, cores: int, nd: NearDupConfig, sim: SimilarConfig) -> dict:
    from lakelens.lsh import MinHashParams, SimHashParams
    from lakelens.lsh_spark import (
        both_directions,
        transform_bucket_rows,
        transform_candidates,
        transform_cosine,
        transform_jaccard,
        transform_top_k,
    )
    from lakelens.spark import build_session
    from udfs.signatures import SIMHASH_UDF_SCHEMA, make_simhash_udf

    tokens, planted = token_sets(n, seed)
    vecs, neighbours = vectors(n, seed)
    with tempfile.TemporaryDirectory(prefix="lakelens-scale-") as tmp:
        cfg = load_config(overrides=[f"spark.master=local[{cores}]", f"lake.root={tmp}/lake",
                                     "spark.conf.spark.driver.memory=16g",
                                     f"spark.conf.spark.sql.shuffle.partitions={4 * cores}"])  # fmt: skip
        spark = build_session(cfg)
        ids = np.char.mod("%08d", np.arange(n))
        pq.write_table(pa.table({"image_id": ids, "tokens": list(tokens)}), f"{tmp}/tokens.parquet")
        pq.write_table(pa.table({"image_id": ids, "vector": list(vecs)}), f"{tmp}/vectors.parquet")
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
        buckets = transform_bucket_rows(signed, "minhash", params.params_id)
        found = transform_candidates(buckets, None, 1000)
        pairs = transform_jaccard(found.pairs, signed, nd.threshold).select("image_id_a", "image_id_b").collect()
        near_s = time.perf_counter() - started
        got = {(int(a), int(b)) for a, b in pairs}

        started = time.perf_counter()
        params = SimHashParams(model="bench", dim=DIM, bands=sim.bands, rows=sim.rows, seed=sim.seed)
        vec = spark.read.parquet(f"{tmp}/vectors.parquet").repartition(8 * cores).cache()
        sbuckets = transform_bucket_rows(vec.mapInPandas(make_simhash_udf(params), SIMHASH_UDF_SCHEMA), "simhash", "b")
        sfound = transform_candidates(sbuckets, None, 1000)
        top = transform_top_k(both_directions(transform_cosine(sfound.pairs, vec), "cosine"), sim.k)
        rows = top.select("image_id", "neighbor_id").collect()
        similar_s = time.perf_counter() - started
        hot = found.hot.count() + sfound.hot.count()
        spark.stop()
    lists: dict[int, list[int]] = {}
    for a, b in rows:
        lists.setdefault(int(a), []).append(int(b))
    sample = np.random.default_rng(seed).choice(n, min(1000, n), replace=False)
    return {
        "near_dup_s": near_s, "near_dup_recall": pair_recall(got, planted), "near_dup_pairs": len(got),
        "similar_s": similar_s, "similar_planted_recall": neighbour_recall(lists, neighbours),
        "similar_recall_at_10": recall_at_10(lists, exact_top10(vecs, sample), sample), "hot_buckets": hot,
    }  # fmt: skip


def run_datasketch(n: int, seed: int, nd: NearDupConfig) -> dict:
    from datasketch import MinHash, MinHashLSH

    tokens, planted = token_sets(n, seed)
    started = time.perf_counter()
    sets = [[int(t).to_bytes(4, "little") for t in row] for row in tokens]
    hashes = MinHash.bulk(sets, num_perm=nd.num_perm, seed=nd.seed)
    lsh = MinHashLSH(threshold=nd.lsh_threshold, num_perm=nd.num_perm)
    with lsh.insertion_session() as session:
        for i, m in enumerate(hashes):
            session.insert(i, m)
    got = set()
    for i, m in enumerate(hashes):
        for j in lsh.query(m):
            if j > i and m.jaccard(hashes[j]) >= nd.threshold:
                got.add((i, j))
    return {"near_dup_s": time.perf_counter() - started, "near_dup_recall": pair_recall(got, planted),
            "near_dup_pairs": len(got)}  # fmt: skip


def run_mllib(n: int, seed: int, cores: int, threshold: float) -> dict:
    from pyspark.ml.feature import BucketedRandomProjectionLSH, MinHashLSH
    from pyspark.ml.linalg import SparseVector, Vectors

    from lakelens.spark import build_session

    tokens, planted = token_sets(n, seed)
    vecs, neighbours = vectors(n, seed)
    with tempfile.TemporaryDirectory(prefix="lakelens-mllib-") as tmp:
        cfg = load_config(overrides=[f"spark.master=local[{cores}]", f"lake.root={tmp}/lake",
                                     "spark.conf.spark.driver.memory=16g"])  # fmt: skip
        spark = build_session(cfg)
        size = COMMON + RARE_UNIVERSE
        rows = [(i, SparseVector(size, sorted(set(map(int, t))), [1.0] * len(set(map(int, t)))))
                for i, t in enumerate(tokens)]  # fmt: skip
        sets = spark.createDataFrame(rows, ["id", "features"]).repartition(8 * cores).cache()
        sets.count()
        started = time.perf_counter()
        model = MinHashLSH(inputCol="features", outputCol="hashes", numHashTables=5, seed=1).fit(sets)
        joined = model.approxSimilarityJoin(sets, sets, 1 - threshold, distCol="d")
        got = {(r.a, r.b) for r in joined.selectExpr("datasetA.id AS a", "datasetB.id AS b").where("a < b").collect()}
        near_s = time.perf_counter() - started
        dense = spark.createDataFrame([(i, Vectors.dense(v.tolist())) for i, v in enumerate(vecs)], ["id", "features"])
        dense = dense.repartition(8 * cores).cache()
        dense.count()
        started = time.perf_counter()
        brp = BucketedRandomProjectionLSH(inputCol="features", outputCol="hashes", bucketLength=1.0, numHashTables=5)
        joined = brp.fit(dense).approxSimilarityJoin(dense, dense, 0.45, distCol="d")  # cosine ~0.9
        close = {(r.a, r.b) for r in joined.selectExpr("datasetA.id AS a", "datasetB.id AS b").where("a < b").collect()}
        similar_s = time.perf_counter() - started
        spark.stop()
    return {"near_dup_s": near_s, "near_dup_recall": pair_recall(got, planted), "near_dup_pairs": len(got),
            "similar_s": similar_s, "similar_planted_recall": pair_recall(close, neighbours)}  # fmt: skip


def run_exact(n: int, seed: int) -> dict:
    vecs, neighbours = vectors(n, seed)
    started = time.perf_counter()
    top = exact_top10(vecs, np.arange(n))
    seconds = time.perf_counter() - started
    lists = {i: row.tolist() for i, row in enumerate(top)}
    return {"similar_s": seconds, "similar_planted_recall": neighbour_recall(lists, neighbours)}


def measured(fn: Callable[[], dict], limit_s: float) -> dict:
    """Run ``fn`` in a child process (so its memory is its own) with a time limit; add wall time and peak memory."""
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=lambda: queue.put(fn()))
    started = time.perf_counter()
    with PeakMemory() as memory:
        child.start()
        child.join(limit_s)
        if child.is_alive():
            for p in psutil.Process(child.pid).children(recursive=True):
                p.kill()
            child.kill()
            child.join()
            return {"finished": False, "limit_s": limit_s}
    result = queue.get() if not queue.empty() else {"finished": False, "exit_code": child.exitcode}
    return {"finished": True, **result, "wall_s": time.perf_counter() - started, "peak_gib": memory.peak / 2**30}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="125000,250000,500000,1000000")
    parser.add_argument("--peers", default="lakelens,datasketch,mllib,exact")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--sim-bands", type=int, default=16, help="SimHash bands (random vectors need long bands)")
    parser.add_argument("--sim-rows", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit-s", type=float, default=1800)
    args = parser.parse_args()
    nd = load_config().index.near_dup
    sim = dataclasses.replace(load_config().index.similar, bands=args.sim_bands, rows=args.sim_rows)
    runners = {
        "lakelens": lambda n: run_lakelens(n, args.seed, args.cores, nd, sim),
        "datasketch": lambda n: run_datasketch(n, args.seed, nd),
        "mllib": lambda n: run_mllib(n, args.seed, args.cores, nd.threshold),
        "exact": lambda n: run_exact(n, args.seed),
    }
    stopped: set[str] = set()
    for n in (int(s) for s in args.sizes.split(",")):
        for peer in args.peers.split(","):
            if peer in stopped:
                continue
            result = measured(lambda peer=peer, n=n: runners[peer](n), args.limit_s)
            if not result["finished"]:
                stopped.add(peer)
            print(json.dumps({"size": n, "path": peer, **result}), flush=True)


if __name__ == "__main__":
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    main()
