"""Search by text through SimHash buckets against exact, at scale:
``python -m bench.search_lsh --lake DIR --model NAME --scenes PATTERN [--images 100000]``.

The image vectors are real where they can be: every scene of the lake (its ``scene_truth``) through the text-image
model ``--model`` of the lake's registry, then vectors drawn from a normal fit to them (mean and covariance, at unit
length) up to ``--images``, so that the buckets fill as real vectors fill them. The queries are the distinct
captions of the scenes whose ``source`` is LIKE ``PATTERN`` (a held-out seed), through the model's text tower.

All of it is written to a new lake (``embeddings`` under the model), and then, side by side on that lake:

- the index stage that buckets the vectors (``stages.index.index_search``), in Spark;
- the batch search (``stages.search.transform_search_results``) exact and through the buckets, in Spark
  ``local[N]``: seconds and queries x images per second;
- one query (``stages.search.search_text``, no Spark, after imports) exact and through the bucket files;
- what the buckets keep: the share of the exact top 10 that the bucket search returns, and recall@10 of the held-out
  scenes (a hit is a scene with the caption's objects) both ways.

Prints JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import torch

from bench.text_search import predict, scene_rows
from lakelens.config import load_config
from lakelens.lake import append, read_table, registry_root
from lakelens.schemas import EMBEDDINGS
from lakelens.spark import build_session, local_frame
from models.registry import load_model
from models.text_image import query_vectors
from models.vocabulary import Vocabulary
from stages.index import index_search, search_params
from stages.search import query_id, search_text, transform_search_results
from udfs.embed import EmbedPredictor


def padded(real: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``real`` [M, D], then n - M vectors drawn from a normal fit to it, at unit length."""
    rng = np.random.default_rng(seed)
    drawn = rng.multivariate_normal(real.mean(axis=0), np.cov(real.T), max(0, n - len(real))).astype(np.float32)
    return np.concatenate([real, drawn / np.linalg.norm(drawn, axis=1, keepdims=True)])


def top(results: pd.DataFrame) -> dict[str, list[str]]:
    ranked = results.sort_values(["query_id", "rank"])
    return {q: rows["image_id"].tolist() for q, rows in ranked.groupby("query_id")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lake", required=True, help="a lake with scene_truth and the model in its registry")
    parser.add_argument("--model", required=True)
    parser.add_argument("--scenes", required=True, metavar="PATTERN", help="scene_truth.source LIKE this: queries")
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--workdir", help="the new lake's folder (default: a temporary one, removed after)")
    parser.add_argument("--set", action="append", default=[], help="more config overrides (index.search.bands=...)")
    args = parser.parse_args()
    torch.set_num_threads(args.cores)
    source = load_config(overrides=[f"lake.root={args.lake}"])
    scenes = scene_rows(source, "%")
    model, manifest = load_model(registry_root(source), args.model)
    real = np.stack([r["vector"] for r in predict(EmbedPredictor(model, manifest, torch.device("cpu")),
                                                  scenes["bytes"].tolist())])  # fmt: skip
    held_out = scene_rows(source, args.scenes)
    queries = held_out.drop_duplicates("caption")[["caption", "key"]].rename(columns={"caption": "query"})
    queries["query_id"] = queries["query"].map(query_id)
    vocabulary = Vocabulary(manifest.vocabulary) if manifest.vocabulary else None
    matrix = query_vectors(model, queries["query"].tolist(), vocabulary).numpy()
    vectors = padded(real, args.images, seed=0)
    ids = [*scenes["image_id"], *(f"drawn{i:07d}" for i in range(len(vectors) - len(scenes)))]

    with tempfile.TemporaryDirectory() as scratch:
        tmp = args.workdir or scratch
        cfg = load_config(overrides=[
            f"lake.root={tmp}", f"spark.master=local[{args.cores}]", f"models.registry={registry_root(source)}",
            "annotate.tasks=[search]", f"annotate.models.search={args.model}", "index.search.method=lsh", *args.set,
        ])  # fmt: skip
        exact_cfg = dataclasses.replace(cfg, index=dataclasses.replace(
            cfg.index, search=dataclasses.replace(cfg.index.search, method="exact")))  # fmt: skip
        spark = build_session(cfg)
        rows = pd.DataFrame({"image_id": ids, "vector": list(vectors), "error": None,
                             "annotated_at": datetime.now(UTC).replace(tzinfo=None), "model": manifest.name,
                             "model_version": manifest.version})  # fmt: skip
        append(local_frame(spark, rows, EMBEDDINGS.schema), cfg, EMBEDDINGS)

        started = time.perf_counter()
        bucketed = index_search(spark, cfg)
        index_s = time.perf_counter() - started

        lake_vectors = read_table(spark, cfg, EMBEDDINGS).select("image_id", "vector").cache()
        lake_vectors.count()
        params = search_params(cfg, manifest)
        now = datetime.now(UTC).replace(tzinfo=None)
        timed = {}
        methods = (("exact", None), ("lsh", (params, cfg.index.search.probes)))
        for _, lsh in methods:  # warm: the Python workers and their imports
            transform_search_results(lake_vectors, queries[["query_id", "query"]].head(5), matrix[:5], args.k,
                                     manifest, now, lsh).toPandas()  # fmt: skip
        for name, lsh in methods:
            started = time.perf_counter()
            found = transform_search_results(lake_vectors, queries[["query_id", "query"]], matrix, args.k, manifest,
                                             now, lsh).toPandas()  # fmt: skip
            timed[name] = (time.perf_counter() - started, top(found))
        spark.stop()

        one = {}
        for name, settings in (("exact", exact_cfg), ("lsh", cfg)):
            search_text(settings, queries["query"].iloc[0], args.k)  # warm: the model and the file listing
            started = time.perf_counter()
            for text in queries["query"].iloc[1:21]:
                search_text(settings, text, args.k)
            one[name] = (time.perf_counter() - started) / 20

    exact, lsh = timed["exact"][1], timed["lsh"][1]
    kept = np.mean([len(set(exact[q]) & set(lsh.get(q, []))) / len(exact[q]) for q in exact])
    key_of = dict(zip(scenes["image_id"], scenes["key"], strict=True))
    wants = dict(zip(queries["query_id"], queries["key"], strict=True))

    def recall(found: dict[str, list[str]]) -> float:
        return float(np.mean([any(key_of.get(i) == wants[q] for i in found.get(q, [])) for q in wants]))

    pairs = len(queries) * len(vectors)
    print(json.dumps({
        "model": f"{manifest.name}:{manifest.version}", "images": len(vectors), "real_images": len(scenes),
        "queries": len(queries), "k": args.k, "cores": args.cores, "lsh": dataclasses.asdict(cfg.index.search),
        "index_seconds": round(index_s, 1), "bucketed": bucketed.indexed,
        "batch_exact_seconds": round(timed["exact"][0], 2), "batch_lsh_seconds": round(timed["lsh"][0], 2),
        "batch_exact_pairs_per_s": round(pairs / timed["exact"][0]),
        "batch_lsh_pairs_per_s": round(pairs / timed["lsh"][0]),
        "lsh_vs_exact_speed": round(timed["exact"][0] / timed["lsh"][0], 3),
        "lsh_keeps_of_exact_top_k": round(float(kept), 4),
        "held_out_recall_at_k_exact": round(recall(exact), 4), "held_out_recall_at_k_lsh": round(recall(lsh), 4),
        "one_query_exact_seconds": round(one["exact"], 4), "one_query_lsh_seconds": round(one["lsh"], 4),
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
