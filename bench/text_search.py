"""Search by text, quality: ``python -m bench.text_search --lake DIR --model NAME (--scenes PATTERN | --coco)``.

Text-to-image recall@1, @5, @10 of a registered text-image model (``models.text_image``) beside two references that
need no training, on the same queries and images:

- random ranking (the expected recall, computed exactly from each query's number of right images);
- the label/caption baseline: each image described by its predicted caption and labels (the lake's ``caption`` and
  ``classify`` models, run here on the image), the description and the query both through the frozen sentence
  encoder (all-MiniLM-L6-v2), ranked by cosine. It works on any photos; it is what the trained space must beat.

``--scenes PATTERN``: the scenes of the lake's ``scene_truth`` whose ``source`` is LIKE ``PATTERN`` (a seed the
model never trained on); each distinct caption is a query over all those scenes; a hit is a scene with the same
objects (shapes, colours and sizes, whatever their layout), which the caption was generated from.
``--coco``: the lake's ``coco_truth`` photos; each val photo's first caption is a query over every photo; a hit is
that photo.

The lake is read without Spark. The baseline's models come from ``--baseline-registry`` (default the bundled scene
models for scenes; for COCO the photo classifier, installed into a temporary registry, and no captioner: no
captioner here describes photos).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from math import comb
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import torch

from lakelens.config import load_config
from lakelens.lake import registry_root, table_dataset
from lakelens.schemas import COCO_TRUTH, IMAGES, SCENE_TRUTH
from models.minilm import SentenceEncoder
from models.pretrained import install_pretrained
from models.registry import BUNDLED, load_model
from models.text_image import query_vectors
from models.vocabulary import Vocabulary
from udfs.caption import CaptionPredictor
from udfs.classify import ClassifyPredictor
from udfs.embed import EmbedPredictor

RECALL_AT = (1, 5, 10)


def scene_rows(cfg, pattern: str) -> pd.DataFrame:
    """(image_id, bytes, caption, key) of the scenes whose source is LIKE ``pattern``; key: their sorted objects."""
    truth = table_dataset(cfg, SCENE_TRUTH).to_table(columns=["image_id", "caption", "labels", "colours", "sizes",
                                                               "source"]).to_pandas()  # fmt: skip
    like = pattern.replace("%", ".*")
    truth = truth[truth["source"].str.fullmatch(like)].drop_duplicates("image_id")
    truth["key"] = [
        "|".join(sorted(map(str, zip(ls, cs, ss, strict=True))))
        for ls, cs, ss in zip(truth["labels"], truth["colours"], truth["sizes"], strict=True)
    ]
    return _with_bytes(cfg, truth[["image_id", "caption", "key"]])


def coco_rows(cfg) -> pd.DataFrame:
    """(image_id, bytes, caption (the first; None without), key (the image id), split) of the lake's COCO photos."""
    truth = table_dataset(cfg, COCO_TRUTH).to_table(columns=["image_id", "captions", "split"]).to_pandas()
    truth = truth.drop_duplicates("image_id")
    truth["caption"] = [c[0] if c is not None and len(c) else None for c in truth["captions"]]
    truth["key"] = truth["image_id"]
    return _with_bytes(cfg, truth[["image_id", "caption", "key", "split"]])


def _with_bytes(cfg, rows: pd.DataFrame) -> pd.DataFrame:
    where = pc.field("image_id").isin(rows["image_id"].tolist()) & pc.field("error").is_null()
    images = table_dataset(cfg, IMAGES).to_table(columns=["image_id", "bytes"], filter=where).to_pandas()
    return rows.merge(images.drop_duplicates("image_id"), on="image_id").sort_values("image_id", ignore_index=True)


def recall(scores: np.ndarray, right: np.ndarray) -> dict[str, float]:
    """Recall@k of queries (rows of ``scores`` float [Q, M]) whose right images are ``right`` bool [Q, M]."""
    order = np.argsort(-scores, axis=1, kind="stable")[:, : max(RECALL_AT)]
    hits = np.take_along_axis(right, order, axis=1)
    return {f"recall_at_{k}": round(float(hits[:, :k].any(axis=1).mean()), 4) for k in RECALL_AT}


def random_recall(right: np.ndarray) -> dict[str, float]:
    """The expected recall@k of a random ranking: 1 - C(M - h, k) / C(M, k) for a query with h right images."""
    m = right.shape[1]
    counts = right.sum(axis=1)
    return {f"recall_at_{k}": round(float(np.mean([1 - comb(m - h, k) / comb(m, k) for h in counts])), 4)
            for k in RECALL_AT}  # fmt: skip


def predict(predictor, images: list[bytes], batch: int = 64) -> list[dict]:
    out = []
    for start in range(0, len(images), batch):
        out += predictor.infer([predictor.prepare(b) for b in images[start : start + batch]])
    return out


def descriptions(images: list[bytes], registry: Path, classifier: str, captioner: str | None) -> list[str]:
    """Each image's predicted caption and labels as one text: "CAPTION. LABEL, LABEL"."""
    device = torch.device("cpu")
    model, manifest = load_model(registry, classifier)
    classify = ClassifyPredictor(model, manifest, device)
    labels = [", ".join(item["label"] for item in row["labels"] or []) for row in predict(classify, images)]
    captions = [""] * len(images)
    if captioner:
        model, manifest = load_model(registry, captioner)
        caption = CaptionPredictor(model, manifest, device, beam_size=3)
        captions = [row["caption"] or "" for row in predict(caption, images)]
    return [f"{c}. {ls}" if c else ls for c, ls in zip(captions, labels, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lake", required=True)
    parser.add_argument("--model", required=True, help="the text-image model, in the lake's registry")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--scenes", metavar="PATTERN", help="scene_truth.source LIKE this: the held-out scenes")
    which.add_argument("--coco", action="store_true", help="the lake's coco_truth photos")
    parser.add_argument("--baseline-registry", type=Path, help="the baseline's classifier (and captioner)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    cfg = load_config(overrides=[f"lake.root={args.lake}"])
    rows = scene_rows(cfg, args.scenes) if args.scenes else coco_rows(cfg)
    queries = rows.dropna(subset=["caption"])
    if args.scenes:
        queries = queries.drop_duplicates("caption")
    else:
        queries = queries[queries["split"] == "val"]
    right = queries["key"].to_numpy()[:, None] == rows["key"].to_numpy()[None, :]
    images = rows["bytes"].tolist()

    model, manifest = load_model(registry_root(cfg), args.model)
    vocabulary = Vocabulary(manifest.vocabulary) if manifest.vocabulary else None
    image_vectors = np.stack([r["vector"] for r in predict(EmbedPredictor(model, manifest, torch.device("cpu")),
                                                               images)])  # fmt: skip
    text_vectors = query_vectors(model, queries["caption"].tolist(), vocabulary).numpy()

    with tempfile.TemporaryDirectory() as tmp:
        if args.baseline_registry:
            registry, classifier, captioner = args.baseline_registry, "classifier", "captioner"
        elif args.scenes:
            registry, classifier, captioner = BUNDLED, "classifier", "captioner"
        else:
            install_pretrained(tmp, ["efficientnet-lite0-imagenet"])
            registry, classifier, captioner = Path(tmp), "efficientnet-lite0-imagenet", None
        described = descriptions(images, registry, classifier, captioner)
    encoder = SentenceEncoder.shared()
    baseline = encoder.encode(queries["caption"].tolist()).numpy() @ encoder.encode(described).numpy().T
    print(json.dumps({
        "model": f"{manifest.name} {manifest.version}",
        "queries": len(queries),
        "images": len(rows),
        "right_images_per_query": round(float(right.sum(axis=1).mean()), 2),
        "text_image": recall(text_vectors @ image_vectors.T, right),
        "label_caption_baseline": recall(baseline, right),
        "baseline_models": f"{classifier}" + (f" + {captioner}" if captioner else ""),
        "random": random_recall(right),
        "example_descriptions": described[:3],
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
