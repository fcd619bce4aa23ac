"""Near-duplicate quality of the perceptual-token MinHash: ``python -m bench.near_dup_quality [--scenes DIR] ...``.

What: pairwise precision and recall of near-duplicate detection, on data sets whose duplicate groups are known:

1. ``scenes``: a ``jobs.synth`` folder (``ground_truth.parquet``: ``dup_group`` links an original with its
   transformed copies; "relayout" rows hold the same objects in another layout and are *not* duplicates);
2. ``photos``: real photos (``--photos`` folders) and, per photo, one copy made by each transform of
   ``lakelens.scenes.transforms`` (jpeg re-encode, resize, crop, brightness, rotation), with a fixed seed.

How: each image's tokens as the signature UDF makes them (``udfs.signatures.image_tokens``: reduced decode, then
``perceptual_tokens``), datasketch MinHash signatures (``lakelens.lsh``) with the configured ``num_perm``, seed,
recipe and banding threshold; two images are candidates when any of their band keys match, as in MinHashLSH, and a
candidate is a near-duplicate when its estimated Jaccard is at least the configured threshold. Every pair inside a
group is a true pair, every other pair is false. Per transform: recall of the original-vs-copy pairs. Printed beside
it: the exact set Jaccard at the same threshold (no MinHash noise, no banding), and an imagehash-style pHash
baseline (64 bits of the 8x8 low-frequency DCT of a 32x32 grey image, against the median of its 63 AC terms; a pair
when the Hamming distance is at most 10, imagehash's usual threshold). Finally the imagededup UKBench checks: the
resized copy of ukbench00120 is found, the ten base images are not paired, the truncated file gives an error row.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import time
from collections import defaultdict
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from PIL import Image
from scipy.fft import dctn

from lakelens.config import load_config
from lakelens.imaging import ImageDecodeError, decode_rgb, decode_rgb_for
from lakelens.lsh import MinHashParams, jaccard, minhash_band_keys, minhash_signatures
from lakelens.perceptual import SIDE, perceptual_tokens, token_bytes
from lakelens.scenes.transforms import TRANSFORM_KINDS, apply_transform
from udfs.signatures import image_tokens

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"  # ../shared/data beside the checkout
PHOTO_DIRS = [DATA / "coco128", DATA / "coco_mini", DATA / "perception_testimages"]
UKBENCH = DATA / "imagededup_ukbench"
PHASH_MAX_DISTANCE = 10


def scene_set(folder: Path) -> tuple[list[bytes], np.ndarray, np.ndarray]:
    """(bytes, group, transform kind) of a jobs.synth folder; an image in no group is a group of its own."""
    truth = pd.read_parquet(folder / "ground_truth.parquet")
    blobs = [(folder / f).read_bytes() for f in truth["file"]]
    alone = pd.Series(-1 - np.arange(len(truth)), index=truth.index)
    groups = truth["dup_group"].fillna(alone).astype(np.int64).to_numpy()
    return blobs, groups, truth["transform"].str.split("_").str[0].to_numpy()


def photo_set(folders: list[Path], seed: int) -> tuple[list[bytes], np.ndarray, np.ndarray]:
    """Every distinct JPEG under ``folders`` (the group's original) and one copy of it per transform (PNGs there
    are label masks)."""
    rng = np.random.default_rng(seed)
    seen: set[str] = set()
    blobs, groups, kinds = [], [], []
    for path in sorted(p for folder in folders for p in folder.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg"}):
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest in seen:  # coco128 and coco_mini share a few photos
            continue
        seen.add(digest)
        rgb = decode_rgb(data)
        blobs.append(data)
        groups.append(len(seen))
        kinds.append("original")
        zeros = np.zeros(rgb.shape[:2], np.uint8)
        for kind in TRANSFORM_KINDS:
            copy = apply_transform(kind, rng, rgb, zeros, zeros, np.zeros((0, 2)))
            blobs.append(copy.encoded if copy.encoded is not None else jpeg(copy.image))
            groups.append(len(seen))
            kinds.append(kind)
    return blobs, np.array(groups), np.array(kinds)


def jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def minhash_pairs(signatures: np.ndarray, params: MinHashParams, threshold: float) -> set[tuple[int, int]]:
    """Pairs (i < j) that share a band key (as MinHashLSH buckets them) and whose estimated Jaccard >= threshold."""
    buckets: dict[tuple[int, bytes], list[int]] = defaultdict(list)
    for row, keys in enumerate(minhash_band_keys(signatures, *params.bands)):
        for band, key in enumerate(keys):
            buckets[band, key].append(row)
    candidates = {pair for rows in buckets.values() for pair in combinations(rows, 2)}
    return {(i, j) for i, j in candidates if jaccard(signatures[i], signatures[j]) >= threshold}


def exact_jaccard(token_sets: list[np.ndarray]) -> np.ndarray:
    """All-pairs exact Jaccard [N, N] of token sets (a sparse incidence matrix)."""
    rows = np.repeat(np.arange(len(token_sets)), [len(t) for t in token_sets])
    _, cols = np.unique(np.concatenate(token_sets), return_inverse=True)
    incidence = sp.csr_matrix((np.ones(len(cols), np.float32), (rows, cols)))
    inter = (incidence @ incidence.T).toarray()
    sizes = np.diag(inter)
    return inter / np.maximum(1.0, sizes[:, None] + sizes[None, :] - inter)


def phash_bits(rgb: np.ndarray) -> np.ndarray:
    """imagehash-style pHash: 32x32 grey (Lanczos), 2-D DCT, the top-left 8x8 terms against the median of the 63
    AC terms (the DC term, the mean brightness, would only shift the median)."""
    grey = np.asarray(Image.fromarray(rgb).convert("L").resize((32, 32), Image.LANCZOS), np.float64)
    low = dctn(grey, type=2)[:8, :8].ravel()
    return low > np.median(low[1:])


def phash_pairs(bits: np.ndarray) -> set[tuple[int, int]]:
    b = bits.astype(np.float32)
    distance = b @ (1 - b).T + (1 - b) @ b.T
    i, j = np.nonzero(np.triu(distance <= PHASH_MAX_DISTANCE, 1))
    return set(zip(i.tolist(), j.tolist(), strict=True))


def scores(found: set[tuple[int, int]], groups: np.ndarray, kinds: np.ndarray) -> dict:
    """Pair counts, precision, recall, and recall per transform of original-vs-copy pairs."""
    i, j = np.triu_indices(len(groups), 1)
    same = groups[i] == groups[j]
    predicted = np.zeros(len(i), bool)
    if found:
        a, b = np.array(sorted(found)).T
        n = len(groups)
        predicted[np.searchsorted(i * n + j, a * n + b)] = True  # (i, j) in triu order: flat index is sorted
    tp, fp = int((predicted & same).sum()), int((predicted & ~same).sum())
    per_kind = {}
    for kind in TRANSFORM_KINDS:
        mask = same & (
            ((kinds[i] == "original") & (kinds[j] == kind)) | ((kinds[j] == "original") & (kinds[i] == kind))
        )
        per_kind[kind] = round(float(predicted[mask].mean()), 4) if mask.any() else None
    return {
        "true_pairs": int(same.sum()),
        "found_pairs": tp + fp,
        "false_pairs": fp,
        "precision": round(tp / max(1, tp + fp), 4),
        "recall": round(tp / max(1, int(same.sum())), 4),
        "recall_per_transform": per_kind,
    }


def evaluate(
    blobs: list[bytes], groups: np.ndarray, kinds: np.ndarray, params: MinHashParams, threshold: float
) -> dict:
    rgbs = [decode_rgb_for(b, SIDE)[0] for b in blobs]
    start = time.perf_counter()
    token_sets = [perceptual_tokens(rgb, params.recipe) for rgb in rgbs]
    ms_per_image = (time.perf_counter() - start) / len(rgbs) * 1e3
    signatures = minhash_signatures([token_bytes(t) for t in token_sets], params)
    exact = exact_jaccard(token_sets)
    exact_found = set(zip(*(x.tolist() for x in np.nonzero(np.triu(exact >= threshold, 1))), strict=True))
    return {
        "images": len(blobs),
        "tokens_ms_per_image": round(ms_per_image, 3),
        "mean_tokens": round(float(np.mean([len(t) for t in token_sets])), 1),
        "lakelens_minhash": scores(minhash_pairs(signatures, params, threshold), groups, kinds),
        "lakelens_exact_jaccard": scores(exact_found, groups, kinds),
        "phash_baseline": scores(phash_pairs(np.stack([phash_bits(rgb) for rgb in rgbs])), groups, kinds),
    }


def ukbench_checks(folder: Path, params: MinHashParams, threshold: float) -> dict:
    """imagededup's UKBench checks, through the signature UDF's own token function."""
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in {".jpg", ".webp"})
    names = [str(p.relative_to(folder)) for p in files]
    found = [image_tokens(p.read_bytes(), None, params.recipe, None) for p in files]
    errors = {n: t for n, t in zip(names, found, strict=True) if isinstance(t, str)}
    good = [i for i, t in enumerate(found) if not isinstance(t, str)]
    signatures = minhash_signatures([token_bytes(found[i]) for i in good], params)
    pairs = {(names[good[a]], names[good[b]]) for a, b in minhash_pairs(signatures, params, threshold)}
    estimated = {names[i]: signatures[k] for k, i in enumerate(good)}
    base = [n for n in names if n.startswith("base_images/")]
    original, resized = "mixed_images/ukbench00120.jpg", "mixed_images/ukbench00120_resize.jpg"
    try:
        decode_rgb_for((folder / "mixed_images/ukbench09268_corrupt.jpg").read_bytes(), SIDE)
        corrupt_raises = False
    except ImageDecodeError:
        corrupt_raises = True
    return {
        "resize_found": (original, resized) in pairs or (resized, original) in pairs,
        "resize_estimated_jaccard": jaccard(estimated[original], estimated[resized]),
        "base_images_paired_with_each_other": sorted(f"{a} ~ {b}" for a, b in pairs if a in base and b in base),
        "corrupt_is_error_row": "mixed_images/ukbench09268_corrupt.jpg" in errors,
        "corrupt_raises_image_decode_error": corrupt_raises,
        "errors": errors,
        "all_pairs_found": sorted(f"{a} ~ {b}" for a, b in pairs),
    }


def main() -> None:
    nd = load_config([]).index.near_dup
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=Path, help="a jobs.synth folder (e.g. /tmp/scenes-eval-seed1)")
    parser.add_argument("--photos", type=Path, action="append", help="folder of photos (repeatable; default: shared)")
    parser.add_argument("--no-photos", action="store_true")
    parser.add_argument("--ukbench", type=Path, default=UKBENCH)
    parser.add_argument("--recipe", default=nd.recipe)
    parser.add_argument("--threshold", type=float, default=nd.threshold, help="verified estimated Jaccard")
    parser.add_argument("--lsh-threshold", type=float, default=nd.lsh_threshold, help="banding threshold")
    parser.add_argument("--num-perm", type=int, default=nd.num_perm)
    parser.add_argument("--seed", type=int, default=0, help="seed of the photo transforms")
    args = parser.parse_args()

    params = MinHashParams(num_perm=args.num_perm, seed=nd.seed, threshold=args.lsh_threshold, recipe=args.recipe)
    result: dict = {
        "recipe": args.recipe,
        "num_perm": args.num_perm,
        "bands": list(params.bands),
        "threshold": args.threshold,
        "lsh_threshold": args.lsh_threshold,
        "phash_max_distance": PHASH_MAX_DISTANCE,
    }
    if args.scenes:
        result["scenes"] = evaluate(*scene_set(args.scenes), params, args.threshold)
    photo_dirs = [d for d in (args.photos or PHOTO_DIRS) if d.is_dir()]
    if photo_dirs and not args.no_photos:
        result["photos"] = {"folders": [str(d) for d in photo_dirs]}
        result["photos"] |= evaluate(*photo_set(photo_dirs, args.seed), params, args.threshold)
    if args.ukbench.is_dir():
        result["imagededup_ukbench"] = ukbench_checks(args.ukbench, params, args.threshold)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
