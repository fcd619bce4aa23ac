"""Recall@10 of the similar-image index against exact cosine: ``python -m bench.similar_recall --lake DIR``.

Reads one embedder's vectors from a lake's ``embeddings`` table, computes each image's exact top 10 by cosine
(brute force), and for each (bands, rows) setting the top 10 that the index finds: candidates are the images that
share a SimHash band key (``lakelens.lsh.simhash_band_keys``, as jobs.index buckets them), ranked by exact cosine.
Prints recall@10 and the candidates an image gets (the cost: the share of all pairs that the join scores).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict

import numpy as np
import pyarrow.compute as pc

from lakelens.config import load_config
from lakelens.lake import table_dataset
from lakelens.lsh import SimHashParams, hyperplanes, simhash_band_keys
from lakelens.schemas import EMBEDDINGS

SETTINGS = ((16, 8), (32, 8), (64, 8), (32, 6), (64, 10), (128, 12))


def lake_vectors(lake: str, model: str, version: str) -> np.ndarray:
    cfg = load_config(overrides=[f"lake.root={lake}"])
    dataset = table_dataset(cfg, EMBEDDINGS)
    if dataset is None:
        raise SystemExit(f"no embeddings table in {lake}")
    where = (pc.field("model") == model) & (pc.field("model_version") == version)
    rows = dataset.to_table(columns=["vector"], filter=where).to_pandas().dropna()
    return np.stack([np.asarray(v, np.float32) for v in rows["vector"]])


def index_top10(vectors: np.ndarray, scores: np.ndarray, bands: int, rows: int, seed: int) -> tuple[list, float]:
    """Each image's top 10 among the images sharing a band key with it, and the mean candidates per image."""
    params = SimHashParams(model="bench", dim=vectors.shape[1], bands=bands, rows=rows, seed=seed)
    buckets: dict[tuple[int, bytes], list[int]] = defaultdict(list)
    for i, keys in enumerate(simhash_band_keys(vectors, hyperplanes(params), bands, rows)):
        for band, key in enumerate(keys):
            buckets[band, key].append(i)
    candidates: list[set[int]] = [set() for _ in vectors]
    for members in buckets.values():
        for i in members:
            candidates[i].update(members)
    tops, total = [], 0
    for i, found in enumerate(candidates):
        others = np.fromiter(found - {i}, np.int64)
        total += len(others)
        tops.append(set(others[np.argsort(-scores[i, others])[:10]].tolist()))
    return tops, total / len(vectors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lake", required=True)
    parser.add_argument("--model", default="embedder")
    parser.add_argument("--version", default="v2")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    vectors = lake_vectors(args.lake, args.model, args.version)
    scores = vectors @ vectors.T
    np.fill_diagonal(scores, -np.inf)
    exact = np.argsort(-scores, axis=1)[:, :10]
    result = {
        "images": len(vectors),
        "tenth_neighbour_cosine_median": float(np.median(scores[np.arange(len(vectors)), exact[:, 9]])),
    }
    for bands, rows in SETTINGS:
        tops, per_image = index_top10(vectors, scores, bands, rows, args.seed)
        recall = np.mean([len(top & set(row.tolist())) / 10 for top, row in zip(tops, exact, strict=True)])
        result[f"bands={bands},rows={rows}"] = {"recall_at_10": round(float(recall), 4),
                                               "candidates_per_image": round(per_image, 1),
                                               "share_of_pairs": round(per_image / (len(vectors) - 1), 4)}  # fmt: skip
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
