"""COCO caption quality against every reference: ``python -m bench.coco_captions --registry DIR --name NAME``.

Scores, by corpus BLEU-4 against all references of each evaluation photo, on the same photos:

- the registered captioner (greedy and beam search);
- a constant caption: the training caption that best matches the training photos' references (the strongest
  constant a training set offers);
- nearest-neighbour retrieval: each photo gets a caption of the training photo closest to it (cosine of 32x32 colour
  thumbnails), the one of its captions that best agrees with the others.

Photos come from coco128 / coco_mini style folders (``lakelens.coco``): training photos are those with captions
in the train split, evaluation photos those in the val split.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from lakelens.coco import coco_rows
from lakelens.imaging import decode_rgb
from models.bleu import corpus_bleu
from models.data import Preprocessing, to_tensor_array
from models.registry import load_model
from models.vocabulary import Vocabulary, tokenize


def thumbnails(images: list[bytes], side: int = 32) -> np.ndarray:
    """Unit-norm, mean-removed colour thumbnails float32 [N, side * side * 3]: a model-free image feature."""
    rows = []
    for data in images:
        small = Image.fromarray(decode_rgb(data)).resize((side, side), Image.BILINEAR)
        vector = np.asarray(small, np.float32).ravel()
        vector -= vector.mean()
        rows.append(vector / max(np.linalg.norm(vector), 1e-6))
    return np.stack(rows)


def consensus(captions: list[list[str]]) -> list[str]:
    """The caption that scores best (BLEU-4) against the others of the same set."""
    if len(captions) == 1:
        return captions[0]
    scores = [corpus_bleu([captions[:i] + captions[i + 1 :]], [c]) for i, c in enumerate(captions)]
    return captions[int(np.argmax(scores))]


def best_constant(train: pd.DataFrame) -> list[str]:
    """Of every training caption, the one with the highest corpus BLEU-4 when given to every training photo."""
    references = [[tokenize(c) for c in caps] for caps in train["captions"]]
    candidates = {" ".join(tokenize(c)) for caps in train["captions"] for c in caps}
    scored = {text: corpus_bleu(references, [text.split()] * len(references)) for text in sorted(candidates)}
    return max(scored, key=scored.get).split()


def model_captions(
    model: torch.nn.Module, vocabulary: Vocabulary, prep: Preprocessing, images: list[bytes], beam: int
) -> list[list[str]]:
    """Words of the model's caption of each image (greedy with ``beam`` 1, else beam search)."""
    captions = []
    for start in range(0, len(images), 64):
        pixels = torch.from_numpy(np.stack([to_tensor_array(data, prep) for data in images[start : start + 64]]))
        ids = model.beam_search(pixels, beam)[0] if beam > 1 else model.greedy(pixels)[0]
        captions += [vocabulary.decode(row).split() for row in ids.tolist()]
    return captions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", required=True, help="the registry holding the captioner")
    parser.add_argument("--name", default="captioner")
    parser.add_argument("--dir", action="append", required=True, help="coco128 / coco_mini folder(s)")
    args = parser.parse_args()
    rows = pd.concat([coco_rows(Path(d)) for d in args.dir], ignore_index=True).drop_duplicates("image_id")
    rows = rows[rows["captions"].map(len) > 0]
    rows["bytes"] = [(Path(d) / f).read_bytes() for d, f in zip(_dirs(rows, args.dir), rows["file"], strict=True)]
    train, val = rows[rows["split"] == "train"], rows[rows["split"] == "val"]
    references = [[tokenize(c) for c in caps] for caps in val["captions"]]

    model, manifest = load_model(args.registry, args.name)
    vocabulary = Vocabulary(manifest.vocabulary)
    prep = Preprocessing.from_manifest(manifest.preprocessing)
    images = list(val["bytes"])
    nearest = (thumbnails(images) @ thumbnails(list(train["bytes"])).T).argmax(axis=1)
    train_captions = [[tokenize(c) for c in caps] for caps in train["captions"]]
    constant = best_constant(train)
    results = {
        "photos_train": len(train),
        "photos_eval": len(val),
        "references_per_photo": float(np.mean([len(r) for r in references])),
        "model": f"{manifest.name} {manifest.version}",
        "bleu4_greedy": corpus_bleu(references, model_captions(model, vocabulary, prep, images, 1)),
        "bleu4_beam3": corpus_bleu(references, model_captions(model, vocabulary, prep, images, 3)),
        "bleu4_constant": corpus_bleu(references, [constant] * len(references)),
        "constant_caption": " ".join(constant),
        "bleu4_nearest_neighbour": corpus_bleu(references, [consensus(train_captions[i]) for i in nearest]),
        "bleu4_one_human_vs_the_others": corpus_bleu([r[1:] for r in references], [r[0] for r in references]),
    }
    print(json.dumps(results, indent=2))


def _dirs(table: pd.DataFrame, dirs: list[str]) -> list[str]:
    """The folder each row's ``file`` is relative to (the one of its source data set)."""
    by_source = {}
    for d in dirs:
        source = "coco128" if (Path(d) / "object_detection").is_dir() else "coco_mini"
        by_source[source] = d
    return [by_source[s] for s in table["source"]]


if __name__ == "__main__":
    main()
