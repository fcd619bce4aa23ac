"""The autoencoder measured: ``python -m bench.autoencode --registry DIR --name NAME --normal DIR --odd KIND=DIR ...``.

- Reconstruction PSNR (dB, pixels in [0, 1], at the model's size) of the images of ``--normal``: images of the kind
  the model learned from, not the ones it learned on.
- Unusualness: ``error_per_pixel`` as the ``autoencode`` task computes it (``udfs.autoencode``, the same code the
  UDF runs) for the normal images and for odd ones mixed among them: each ``--odd KIND=DIR`` folder, ``--blank N``
  frames of one flat colour, and ``--noise N`` frames of uniform noise. ROC AUC of the error ranking odd above
  normal, over all odd images and per kind (1.0: every odd image ranks before every normal one; 0.5: chance).
  Ranked by ``error_per_pixel`` and by ``unusualness`` (the error over the square root of the image's own
  complexity: a simple image is easy for any autoencoder, so its raw error is low however unlike the training
  images it is; Serra et al. 2020 make the same correction to likelihoods). ``--sweep`` also ranks by the error over
  the complexity to other powers (0: the raw error; 0.5: unusualness; 1: a plain ratio).
- With ``--scenes`` (a ``jobs.synth`` folder): near-duplicate and same-content recall@1 of the codes, and of
  ``--embedder`` beside them (``bench.embedder_scenes``'s queries).
"""

from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from bench.embedder_scenes import content_keys, nearest
from models.data import Preprocessing, to_tensor_array
from models.registry import load_model
from udfs.autoencode import AutoencodePredictor
from udfs.predictor import predict_frame

PATTERNS = ("*.jpg", "*.jpeg", "*.png")


def roc_auc(odd: np.ndarray, normal: np.ndarray) -> float:
    """P(an odd image's score > a normal one's), ties counting one half (Mann-Whitney U over the pairs)."""
    scores = np.concatenate([odd, normal])
    order = scores.argsort(kind="mergesort")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    for value in np.unique(scores):  # ties share their mean rank
        tied = scores == value
        ranks[tied] = ranks[tied].mean()
    return float((ranks[: len(odd)].sum() - len(odd) * (len(odd) + 1) / 2) / (len(odd) * len(normal)))


def files(folder: str, limit: int) -> list[bytes]:
    found = sorted(p for pattern in PATTERNS for p in Path(folder).glob(pattern))
    return [p.read_bytes() for p in found[:limit]]


def made_frames(kind: str, n: int, seed: int) -> list[bytes]:
    """``n`` PNG frames of ``kind``: blank (one flat colour each) or noise (uniform per pixel), 96 x 64."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        if kind == "blank":
            pixels = np.broadcast_to(rng.integers(0, 256, 3, dtype=np.uint8), (64, 96, 3))
        else:
            pixels = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


def scored(predictor: AutoencodePredictor, images: list[bytes]) -> pd.DataFrame:
    """The task's rows for ``images`` that it could read."""
    frame = predict_frame(predictor, pd.DataFrame({"image_id": [str(i) for i in range(len(images))], "bytes": images}))
    return frame[frame["error"].isna()]


def by_power(rows: pd.DataFrame, power: float) -> np.ndarray:
    """The error over (complexity + floor) ** power, the complexity read back from unusualness (its power 0.5)."""
    error = rows["error_per_pixel"].to_numpy()
    complexity = (error / rows["unusualness"].to_numpy()) ** 2
    return error / complexity**power


def code_recall(model: torch.nn.Module, prep: Preprocessing, scenes: Path, embedder: tuple | None) -> dict:
    """Near-duplicate and same-content recall@1 of the codes (and of the embedder) over a jobs.synth folder."""
    truth = pd.read_parquet(scenes / "ground_truth.parquet")
    dup = [None if pd.isna(g) else int(g) for g in truth.dup_group]
    similar_queries = [i for i, g in enumerate(truth.similar_group) if not pd.isna(g)]
    dup_queries = [i for i, g in enumerate(dup) if g is not None]
    keys = content_keys(truth)

    def recall(vectors: torch.Tensor) -> dict:
        found = nearest(torch.nn.functional.normalize(vectors, dim=1))
        return {
            "near_duplicate_recall_at_1": sum(dup[found[q]] == dup[q] for q in dup_queries) / len(dup_queries),
            "same_content_recall_at_1": sum(keys[found[q]] == keys[q] for q in similar_queries) / len(similar_queries),
        }

    def vectors_of(net: torch.nn.Module, its_prep: Preprocessing) -> torch.Tensor:
        pixels = torch.from_numpy(np.stack([to_tensor_array((scenes / f).read_bytes(), its_prep) for f in truth.file]))
        with torch.no_grad():
            out = [net(pixels[i : i + 256]) for i in range(0, len(pixels), 256)]
        return torch.cat([o["vectors"] for o in out])

    result = {
        "scenes": len(truth),
        "near_duplicate_queries": len(dup_queries),
        "relayout_queries": len(similar_queries),
        "codes": recall(vectors_of(model, prep)),
    }
    if embedder:
        net, manifest = embedder
        its_prep = Preprocessing.from_manifest(manifest.preprocessing)
        result["embedder"] = {
            "model": f"{manifest.name} {manifest.version}",
            **recall(vectors_of(net, its_prep)),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", required=True)
    parser.add_argument("--name", default="autoencoder")
    parser.add_argument("--normal", required=True, help="a folder of images of the kind the model learned from")
    parser.add_argument("--odd", action="append", default=[], help="KIND=DIR: odd images (repeatable)")
    parser.add_argument("--blank", type=int, default=100, help="blank frames among the odd images")
    parser.add_argument("--noise", type=int, default=100, help="noise frames among the odd images")
    parser.add_argument("--limit", type=int, default=1000, help="images at most per folder")
    parser.add_argument("--sweep", action="store_true", help="also rank by the error over other powers of complexity")
    parser.add_argument("--scenes", type=Path, help="a jobs.synth folder: recall@1 of the codes")
    parser.add_argument("--embedder", help="a registry embedder to compare the codes with (with --scenes)")
    args = parser.parse_args()
    model, manifest = load_model(args.registry, args.name)
    predictor = AutoencodePredictor(model, manifest, torch.device("cpu"), batch_size=64)
    started = time.perf_counter()
    normal = scored(predictor, files(args.normal, args.limit))
    seconds = time.perf_counter() - started
    odd: dict[str, pd.DataFrame] = {}
    for spec in args.odd:
        kind, _, folder = spec.partition("=")
        odd[kind] = pd.concat([odd.get(kind), scored(predictor, files(folder, args.limit))])
    for kind, n in (("blank", args.blank), ("noise", args.noise)):
        if n:
            odd[kind] = scored(predictor, made_frames(kind, n, seed=len(odd)))
    powers = (0.0, 0.25, 0.5, 0.75, 1.0) if args.sweep else ()

    def aucs(rows: pd.DataFrame) -> dict[str, float]:
        found = {
            f"auc_{s}": roc_auc(rows[s].to_numpy(), normal[s].to_numpy()) for s in ("error_per_pixel", "unusualness")
        }
        return found | {f"auc_power_{p}": roc_auc(by_power(rows, p), by_power(normal, p)) for p in powers}

    errors = normal["error_per_pixel"].to_numpy()
    result = {
        "model": f"{manifest.name} {manifest.version}",
        "denoising_noise": manifest.arch_args.get("noise", 0.0),
        "normal_images": len(normal),
        "normal_psnr": float(np.mean(10 * np.log10(1 / np.clip(errors, 1e-10, None)))),
        "normal_mean_error": float(errors.mean()),
        "images_per_s": len(normal) / seconds,
        "odd": {
            kind: {"images": len(rows), "mean_error": float(rows["error_per_pixel"].mean()), **aucs(rows)}
            for kind, rows in odd.items()
        },  # fmt: skip
        "all_odd": aucs(pd.concat(list(odd.values()))) if odd else None,
    }
    if args.scenes:
        embedder = load_model(args.registry, args.embedder) if args.embedder else None
        result["recall"] = code_recall(model, predictor.prep, args.scenes, embedder)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
