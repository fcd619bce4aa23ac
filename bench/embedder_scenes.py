"""Embedder recall@1 on synthetic scenes it never saw: ``python -m bench.embedder_scenes --registry DIR --scenes DIR``.

Makes no assumption about the training set: ``--scenes`` is a ``jobs.synth`` folder of another seed. Every scene is
searched; the queries and what counts as a hit:

- near-duplicates: each scene of a planted near-duplicate group (base and copies) must find one of its group;
- same-content: each scene of a planted relayout group must find a scene with exactly its objects (the multiset of
  shape, colour and size), its planted partner or another;
- strict relayout: the same queries must find their planted partner, with the best any image feature can reach
  beside it: where other scenes hold the very same objects, a tie among them is broken at random.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from models.data import Preprocessing, to_tensor_array
from models.registry import load_model


def content_keys(truth: pd.DataFrame) -> list[tuple]:
    """The multiset of (shape, colour, size) of each scene, as a sorted tuple."""
    columns = zip(truth.labels, truth.colours, truth.sizes, strict=True)
    return [tuple(sorted(zip(shapes, colours, sizes, strict=True))) for shapes, colours, sizes in columns]


def nearest(vectors: torch.Tensor) -> np.ndarray:
    """Index of each row's most similar other row by cosine (unit vectors [N, D])."""
    similarity = vectors @ vectors.T
    similarity.fill_diagonal_(float("-inf"))
    return similarity.argmax(dim=1).numpy()


def strict_ceiling(queries: list[int], group: list, keys: list[tuple]) -> float:
    """Expected strict recall@1 of a perfect content matcher that breaks ties among same-content scenes at random."""
    by_key = defaultdict(list)
    for i, key in enumerate(keys):
        by_key[key].append(i)
    expected = []
    for q in queries:
        same = [j for j in by_key[keys[q]] if j != q]
        partners = [j for j in same if group[j] == group[q]]
        expected.append(len(partners) / len(same) if same else 0.0)
    return float(np.mean(expected))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", required=True)
    parser.add_argument("--name", default="embedder")
    parser.add_argument("--scenes", required=True, help="a jobs.synth folder the embedder was not trained on")
    args = parser.parse_args()
    truth = pd.read_parquet(Path(args.scenes) / "ground_truth.parquet")
    model, manifest = load_model(args.registry, args.name)
    prep = Preprocessing.from_manifest(manifest.preprocessing)
    pixels = np.stack([to_tensor_array((Path(args.scenes) / f).read_bytes(), prep) for f in truth.file])
    with torch.no_grad():
        batches = [torch.from_numpy(pixels[i : i + 256]) for i in range(0, len(pixels), 256)]
        vectors = torch.cat([model(batch)["vectors"] for batch in batches])
    found = nearest(vectors)
    keys = content_keys(truth)
    dup = [None if pd.isna(g) else int(g) for g in truth.dup_group]
    similar = [None if pd.isna(g) else int(g) for g in truth.similar_group]
    dup_queries = [i for i, g in enumerate(dup) if g is not None]
    similar_queries = [i for i, g in enumerate(similar) if g is not None]
    dup_hits = sum(dup[found[q]] == dup[q] for q in dup_queries)
    content_hits = sum(keys[found[q]] == keys[q] for q in similar_queries)
    strict_hits = sum(similar[found[q]] == similar[q] for q in similar_queries)
    print(json.dumps({
        "model": f"{manifest.name} {manifest.version}",
        "scenes": len(truth),
        "near_duplicate_queries": len(dup_queries),
        "near_duplicate_recall_at_1": dup_hits / len(dup_queries),
        "relayout_queries": len(similar_queries),
        "same_content_recall_at_1": content_hits / len(similar_queries),
        "recall_at_1": (dup_hits + content_hits) / (len(dup_queries) + len(similar_queries)),
        "strict_relayout_recall_at_1": strict_hits / len(similar_queries),
        "strict_relayout_ceiling": strict_ceiling(similar_queries, similar, keys),
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
