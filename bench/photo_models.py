"""The pretrained photo models on real photos: ``python -m bench.photo_models``.

Both registry photo models (``mobilenet-v2-imagenet``, ``efficientnet-lite0-imagenet``, installed into a
temporary registry by ``models.pretrained.install_pretrained`` and prepared as the annotate UDF prepares them:
channels last), side by side in one run, on the COCO photos of ../shared/data (coco128's YOLO labels, coco_mini's
JSON; a photo in both counts once):

1. classification: a photo is labelled when its largest object (by box area) covers at least ``--min-share`` of
   it and is a COCO class that ImageNet also names (:data:`COCO_TO_IMAGENET`); a hit is a prediction among the
   ImageNet ids of that class, in the top 1 or the top 5. Two preprocessings: ``squash`` (the whole photo resized
   to 224 x 224, what the project's ``Preprocessing`` does) and ``crop`` (shorter side to 256, centre 224 x 224,
   torchvision's ImageNet evaluation);
2. bfloat16 on the CPU: the same with ``torch.autocast("cpu", dtype=torch.bfloat16)`` (squash input): its top-1
   agreement with float32, hit counts, the least cosine between the float32 and bfloat16 pooled features (on the
   labelled photos and on every photo), and images/s of both on pre-decoded tensors (batch ``--batch-size``,
   ``--threads`` torch threads, channels last, float32 and bfloat16 rounds interleaved, the median round);
3. embeddings: recall@1 and @5 by category (a hit when one of a labelled photo's k nearest others by cosine has
   its category; photos alone in their category are no query) for both photo models' vectors, raw pixels (the
   photo resized to 32 x 32, flattened, unit length) and the bundled scene embedder, each model's vectors made by
   ``udfs.embed.EmbedPredictor`` through the predict core; and near-duplicate recall@1: every photo gets three
   variants (resized to 60 %, re-encoded at JPEG quality 40, cropped by 10 % of each side from its top-left), each
   variant searched among all originals and every other photo's variants (its own siblings left out), a hit when
   its nearest is its original; on the labelled photos and on every photo;
4. speed: images/s of ``udfs.predictor.predict_frame`` with ``ClassifyPredictor`` on the photos' JPEG bytes
   (decode included, ``--decode-threads``) against a bare torch loop of the same model over the same photos
   pre-decoded (both batch ``--batch-size``, rounds interleaved, the median round), and their ratio.

Everything but the timings is deterministic. Skips with a message when ../shared/data has no COCO photos.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from lakelens.coco import coco_rows
from lakelens.imaging import decode_rgb, decode_rgb_for
from models.data import Preprocessing, preprocess_rgb
from models.pretrained import REGISTRY_MODELS, install_pretrained
from models.registry import BUNDLED, Manifest, load_model, read_entry
from udfs.classify import ClassifyPredictor
from udfs.embed import EmbedPredictor
from udfs.predictor import predict_frame
from udfs.runtime import cached_model

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"  # ../shared/data beside the checkout
COCO_DIRS = ("coco128", "coco_mini")
CROP_RESIZE = 256  # crop preprocessing: shorter side to this, then the centre at the model's size

# COCO-80 class -> the ImageNet-1k class ids (index into models/imagenet_classes.txt) that count as naming it.
# Whole objects only: parts (car wheel 479, radiator grille 581, car mirror 475) and scenes do not count, nor
# ImageNet classes that share only a word (kite 21 is a bird of prey). Where ImageNet splits a class by kind, every
# kind counts (dog: the 118 breeds 151-268; bird: every bird class). COCO classes left out have no ImageNet class:
# person, fire hydrant, giraffe, suitcase, frisbee, snowboard, kite, baseball bat, baseball glove, skateboard,
# surfboard, fork, carrot, donut, cake, scissors, toothbrush.
COCO_TO_IMAGENET: dict[str, tuple[int, ...]] = {
    "bicycle": (444, 671),  # tandem bicycle, mountain bike
    "car": (436, 468, 511, 609, 627, 656, 661, 751, 817),  # station wagon, taxicab, convertible, jeep, limousine,
    # minivan, Model T, race car, sports car
    "motorcycle": (665, 670),  # moped, motor scooter
    "airplane": (404, 895, 908),  # airliner, military aircraft, airplane wing
    "bus": (654, 779, 874),  # minibus, school bus, trolleybus
    "train": (466, 547, 565, 705, 820, 829),  # high-speed train, electric locomotive, freight car, railroad car,
    # steam locomotive, tram
    "truck": (407, 555, 569, 675, 717, 734, 864, 867),  # ambulance, fire truck, garbage truck, moving van,
    # pickup truck, police van, tow truck, semi-trailer truck
    "boat": (403, 472, 484, 510, 554, 576, 625, 628, 724, 780, 814, 833, 871, 914),  # aircraft carrier, kayak,
    # catamaran, container ship, fireboat, gondola, lifeboat, ocean liner, pirate ship, schooner, motorboat,
    # submarine, trimaran, yawl
    "traffic light": (920,),
    "stop sign": (919,),  # street sign
    "parking meter": (704,),
    "bench": (703,),  # park bench
    "bird": (*range(7, 25), *range(80, 101), *range(127, 147)),  # every bird class
    "cat": tuple(range(281, 286)),  # tabby, tiger cat, Persian, Siamese, Egyptian Mau (not the big cats)
    "dog": tuple(range(151, 269)),  # the dog breeds (not wolves, foxes, wild dogs)
    "horse": (339, 603),  # sorrel, horse-drawn vehicle
    "sheep": (348, 349),  # ram, bighorn sheep
    "cow": (345, 346, 347),  # ox, water buffalo, bison
    "elephant": (101, 385, 386),  # tusker, Asian, African bush elephant
    "bear": (294, 295, 296, 297, 388),  # brown, American black, polar, sloth bear, giant panda
    "zebra": (340,),
    "backpack": (414,),
    "umbrella": (879,),
    "handbag": (748,),  # purse
    "tie": (451, 457, 906),  # bolo tie, bow tie, Windsor tie
    "skis": (795,),
    "sports ball": (429, 430, 522, 574, 722, 768, 805, 852, 890),  # baseball, basketball, croquet, golf,
    # ping-pong, rugby, soccer, tennis, volleyball
    "tennis racket": (752,),
    "bottle": (440, 720, 737, 898, 907),  # beer, pill, soda, water, wine bottle
    "wine glass": (572, 966),  # goblet, red wine
    "cup": (504, 968),  # coffee mug, tea cup
    "knife": (499,),  # cleaver
    "spoon": (618, 910),  # ladle, wooden spoon
    "bowl": (659, 809),  # mixing bowl, soup bowl
    "banana": (954,),
    "apple": (948,),  # Granny Smith
    "sandwich": (933,),  # cheeseburger
    "orange": (950,),
    "broccoli": (937,),
    "hot dog": (934,),
    "pizza": (963,),
    "chair": (423, 559, 765, 857),  # barber chair, folding chair, rocking chair, throne
    "couch": (831,),
    "potted plant": (738,),  # plant pot
    "bed": (520, 564),  # infant bed, four-poster bed
    "dining table": (532,),
    "toilet": (861,),  # toilet seat
    "tv": (664, 782, 851),  # monitor, CRT monitor, television
    "laptop": (620, 681),  # laptop, notebook computer
    "mouse": (673,),  # computer mouse
    "remote": (761,),
    "keyboard": (508, 878),  # computer keyboard, typewriter keyboard
    "cell phone": (487,),
    "microwave": (651,),
    "oven": (827,),  # stove
    "toaster": (859,),
    "sink": (896,),
    "refrigerator": (760,),
    "book": (917, 921),  # comic book, dust jacket
    "clock": (409, 530, 892),  # analog, digital, wall clock
    "vase": (883,),
    "teddy bear": (850,),
    "hair drier": (589,),
}


def photos(folders: list[Path]) -> pd.DataFrame:
    """Every distinct COCO photo (``image_id``, ``bytes``, ``labels``, ``boxes``, ``width``, ``height``) with its
    largest object's ``category`` and the ``share`` of the photo its box covers (None and 0 without objects)."""
    rows = pd.concat([coco_rows(f) for f in folders], ignore_index=True).drop_duplicates("image_id")
    rows = rows.sort_values("image_id", ignore_index=True)
    rows["bytes"] = [(f / file).read_bytes() for f, file in zip(_folders(rows, folders), rows.file, strict=True)]
    categories, shares = [], []
    for labels, boxes, width, height in zip(rows.labels, rows.boxes, rows.width, rows.height, strict=True):
        areas = [b["w"] * b["h"] for b in boxes]
        best = int(np.argmax(areas)) if areas else None
        categories.append(None if best is None else labels[best])
        shares.append(0.0 if best is None else areas[best] / (width * height))
    rows["category"], rows["share"] = categories, shares
    return rows


def _folders(rows: pd.DataFrame, folders: list[Path]) -> list[Path]:
    by_source = {"coco128" if (f / "object_detection").is_dir() else "coco_mini": f for f in folders}
    return [by_source[s] for s in rows.source]


def squash(data: bytes, prep: Preprocessing) -> np.ndarray:
    """The project's preprocessing (``Predictor.prepare``): the whole photo resized to size x size."""
    rgb, _ = decode_rgb_for(data, prep.size)
    return preprocess_rgb(rgb, prep)


def centre_crop(data: bytes, prep: Preprocessing, resize: int = CROP_RESIZE) -> np.ndarray:
    """torchvision's ImageNet evaluation: shorter side to ``resize`` (bilinear), the centre size x size."""
    img = Image.fromarray(decode_rgb(data))
    w, h = img.size
    scale = resize / min(w, h)
    img = img.resize((max(resize, round(w * scale)), max(resize, round(h * scale))), Image.BILINEAR)
    left, top = round((img.width - prep.size) / 2), round((img.height - prep.size) / 2)
    img = img.crop((left, top, left + prep.size, top + prep.size))
    pixels = np.asarray(img, np.float32) / 255.0
    pixels = (pixels - np.asarray(prep.mean, np.float32)) / np.asarray(prep.std, np.float32)
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


def forward(
    model: torch.nn.Module, pixels: np.ndarray, batch_size: int, bf16: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits [N, 1000] and pooled features [N, 1280], float32, of pre-decoded pixels [N, 3, S, S]."""
    logits, features = [], []
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for start in range(0, len(pixels), batch_size):
            batch = torch.from_numpy(pixels[start : start + batch_size]).contiguous(memory_format=torch.channels_last)
            out = model(batch)
            logits.append(out["logits"].float())
            features.append(out["features"].float())
    return torch.cat(logits), torch.cat(features)


def hits(logits: torch.Tensor, categories: list[str], k: int) -> int:
    """Photos whose top ``k`` classes hold one of their category's ImageNet ids."""
    top = logits.topk(k, dim=1).indices.tolist()
    return sum(bool(set(ids) & set(COCO_TO_IMAGENET[c])) for ids, c in zip(top, categories, strict=True))


def by_category(logits: torch.Tensor, categories: list[str]) -> str:
    """Top-1 hits per category, the largest categories first: "dining table 3/29, bed 2/12, ..."."""
    top = logits.argmax(dim=1).tolist()
    counts: dict[str, list[int]] = {}
    for i, c in zip(top, categories, strict=True):
        counts.setdefault(c, [0, 0])
        counts[c][0] += i in COCO_TO_IMAGENET[c]
        counts[c][1] += 1
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1][1], kv[0]))
    return ", ".join(f"{c} {h}/{n}" for c, (h, n) in ranked)


def raw_pixels(blobs: list[bytes], side: int = 32) -> np.ndarray:
    """Each photo resized to side x side (bilinear), flattened, unit length: float32 [N, side * side * 3]."""
    rows = []
    for data in blobs:
        vector = np.asarray(Image.fromarray(decode_rgb(data)).resize((side, side), Image.BILINEAR), np.float32)
        vector = vector.ravel()
        rows.append(vector / max(float(np.linalg.norm(vector)), 1e-12))
    return np.stack(rows)


def embed(model: torch.nn.Module, manifest: Manifest, blobs: list[bytes], batch_size: int, threads: int) -> np.ndarray:
    """Unit vectors [N, D] of ``blobs`` as the embed task makes them (``EmbedPredictor`` through the predict core)."""
    predictor = EmbedPredictor(model, manifest, torch.device("cpu"), batch_size)
    frame = pd.DataFrame({"image_id": [str(i) for i in range(len(blobs))], "bytes": blobs})
    out = predict_frame(predictor, frame, threads)
    bad = out.error.dropna()
    if len(bad):
        raise RuntimeError(f"{len(bad)} photos failed to embed: {bad.iloc[0]}")
    return np.stack(out.vector.tolist()).astype(np.float32)


def category_recall(vectors: np.ndarray, categories: list[str], ks: tuple[int, ...] = (1, 5)) -> dict:
    """Recall@k by category: a query hits when one of its k nearest others (cosine; equal cosines by index) has its
    category. Queries: photos whose category has another photo; ``chance_at_1`` is a random neighbour's."""
    cats = np.asarray(categories)
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -np.inf)
    order = np.argsort(-similarity, axis=1, kind="stable")
    same = cats[order] == cats[:, None]
    queries = np.flatnonzero([(cats == c).sum() > 1 for c in cats])
    result = {"queries": int(len(queries))}
    if not len(queries):
        return result
    for k in ks:
        result[f"recall_at_{k}"] = float(same[queries, :k].any(axis=1).mean())
    result["chance_at_1"] = float(np.mean([((cats == cats[q]).sum() - 1) / (len(cats) - 1) for q in queries]))
    return result


VARIANTS = ("resize_60", "jpeg_q40", "crop_10")


def variants(data: bytes) -> list[bytes]:
    """The photo resized to 60 % (bilinear), re-encoded at JPEG quality 40, and cropped by 10 % of each side from
    its top-left (the bottom-right 90 % x 90 % kept): JPEG bytes in :data:`VARIANTS` order (quality 95 but the
    second)."""
    img = Image.fromarray(decode_rgb(data))
    w, h = img.size
    small = img.resize((round(0.6 * w), round(0.6 * h)), Image.BILINEAR)
    cropped = img.crop((round(0.1 * w), round(0.1 * h), w, h))
    return [_jpeg(small, 95), _jpeg(img, 40), _jpeg(cropped, 95)]


def _jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def near_dup_recall(originals: np.ndarray, copies: np.ndarray) -> dict:
    """Recall@1 of variant -> original. ``originals`` [N, D], ``copies`` [N, V, D] (unit vectors): each variant is
    searched among all originals and every other photo's variants; a hit when its nearest is its own original."""
    n, v, _ = copies.shape
    gallery = np.concatenate([originals, copies.reshape(n * v, -1)])
    owner = np.concatenate([np.arange(n), np.repeat(np.arange(n), v)])
    is_original = np.arange(len(gallery)) < n
    found = np.zeros((n, v), bool)
    for j in range(v):
        similarity = copies[:, j] @ gallery.T  # [N, N + N V]
        similarity[(owner[None, :] == np.arange(n)[:, None]) & ~is_original[None, :]] = -np.inf  # own siblings
        found[:, j] = similarity.argmax(axis=1) == np.arange(n)
    result = {"photos": n, "recall_at_1": float(found.mean())}
    result |= {f"recall_at_1_{name}": float(found[:, j].mean()) for j, name in enumerate(VARIANTS)}
    return result


def interleaved(runs: dict[str, Callable[[], int]], rounds: int) -> dict[str, float]:
    """Median images/s of each run (it returns the images it did), the runs taking turns for ``rounds`` rounds
    after one warm-up round."""
    for run in runs.values():
        run()
    rates: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            started = time.perf_counter()
            n = run()
            rates[name].append(n / (time.perf_counter() - started))
    return {name: statistics.median(r) for name, r in rates.items()}


def labelled_mask(rows: pd.DataFrame) -> pd.Series:
    """Rows whose largest object is a class ImageNet names."""
    return rows.category.isin(list(COCO_TO_IMAGENET))


def _rounded(value):
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def model_figures(
    model: torch.nn.Module, manifest: Manifest, labelled: pd.DataFrame, every: pd.DataFrame, args: argparse.Namespace
) -> dict:
    """Classification (1), bfloat16 (2) and speed (4) figures of one photo model."""
    cpu = torch.device("cpu")
    prep = Preprocessing.from_manifest(manifest.preprocessing)
    categories, n = labelled.category.tolist(), len(labelled)
    figures: dict = {}

    # 1. Classification, squash and crop, float32 and bfloat16.
    squashed = np.stack([squash(b, prep) for b in labelled.bytes])
    cropped = np.stack([centre_crop(b, prep) for b in labelled.bytes])
    runs = {
        (p, dtype): forward(model, pixels, args.batch_size, dtype == "bf16")
        for p, pixels in (("squash", squashed), ("crop", cropped))
        for dtype in ("fp32", "bf16")
    }
    table = np.asarray(categories) == "dining table"  # mostly photos of food on a table: a label ImageNet rarely gives
    for p in ("squash", "crop"):
        logits = runs[(p, "fp32")][0]
        figures[f"top1_{p}"] = f"{hits(logits, categories, 1)}/{n}"
        figures[f"top5_{p}"] = f"{hits(logits, categories, 5)}/{n}"
        rest = [c for c, t in zip(categories, table, strict=True) if not t]
        figures[f"top1_top5_{p}_without_dining_table"] = (
            f"{hits(logits[~table], rest, 1)}/{len(rest)}, {hits(logits[~table], rest, 5)}/{len(rest)}"
        )
        figures[f"top1_{p}_by_category"] = by_category(logits, categories)

    # 2. bfloat16 against float32: outputs on the labelled photos and on every photo (squash), then speed.
    bf16: dict = {}
    for p in ("squash", "crop"):
        (l32, f32), (l16, f16) = runs[(p, "fp32")], runs[(p, "bf16")]
        bf16[f"top1_agreement_{p}"] = float((l32.argmax(1) == l16.argmax(1)).float().mean())
        bf16[f"top1_hits_{p}"] = f"fp32 {hits(l32, categories, 1)}, bf16 {hits(l16, categories, 1)} of {n}"
        bf16[f"top5_hits_{p}"] = f"fp32 {hits(l32, categories, 5)}, bf16 {hits(l16, categories, 5)} of {n}"
        bf16[f"min_feature_cosine_{p}"] = float(torch.cosine_similarity(f32, f16, dim=1).min())
    every_px = np.stack([squash(b, prep) for b in every.bytes])
    (l32, f32), (l16, f16) = forward(model, every_px, args.batch_size), forward(model, every_px, args.batch_size, True)
    bf16["top1_agreement_all_photos"] = float((l32.argmax(1) == l16.argmax(1)).float().mean())
    bf16["min_feature_cosine_all_photos"] = float(torch.cosine_similarity(f32, f16, dim=1).min())
    size = args.speed_batches * args.batch_size
    timed_px = np.concatenate([every_px] * (1 + size // len(every_px)))[:size]

    def timed_forward(bf16: bool) -> int:
        forward(model, timed_px, args.batch_size, bf16)
        return size

    rates = interleaved({"fp32": partial(timed_forward, False), "bf16": partial(timed_forward, True)}, args.rounds)
    bf16["images_per_s_fp32"], bf16["images_per_s_bf16"] = rates["fp32"], rates["bf16"]
    bf16["speedup"] = rates["bf16"] / rates["fp32"]
    figures["bf16"] = bf16

    # 4. The classify predict core on JPEG bytes against a bare loop over the same photos pre-decoded.
    predictor = ClassifyPredictor(model, manifest, cpu, args.batch_size)
    frame = pd.DataFrame({"image_id": every.image_id, "bytes": every.bytes})
    started = time.perf_counter()
    bare_px = torch.from_numpy(np.stack([predictor.prepare(b).pixels for b in every.bytes]))
    prepare_ms = 1e3 * (time.perf_counter() - started) / len(every)

    def through_udf_core() -> int:
        out = predict_frame(predictor, frame, args.decode_threads)
        if out.error.notna().any():
            raise RuntimeError(f"the classify predict core failed on a photo: {out.error.dropna().iloc[0]}")
        return len(out)

    def bare_loop() -> int:
        with torch.inference_mode():
            for start in range(0, len(bare_px), args.batch_size):
                model(bare_px[start : start + args.batch_size].contiguous(memory_format=torch.channels_last))
        return len(bare_px)

    rates = interleaved({"udf_core": through_udf_core, "bare_loop": bare_loop}, args.rounds)
    figures["speed"] = {
        "images": len(every),
        "udf_core_images_per_s": rates["udf_core"],
        "bare_loop_images_per_s": rates["bare_loop"],
        "udf_core_vs_bare_loop": rates["udf_core"] / rates["bare_loop"],
        "decode_and_preprocess_ms_per_image": prepare_ms,
    }
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="../shared/data (holding coco128 and coco_mini)")
    parser.add_argument("--min-share", type=float, default=0.25, help="least box area of the largest object")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--decode-threads", type=int, default=2, help="the predict core's decode threads")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds of each interleaved run")
    parser.add_argument("--speed-batches", type=int, default=4, help="batches per bfloat16 / float32 timed round")
    parser.add_argument("--limit", type=int, help="use only the first N photos (by image_id): a quick check")
    args = parser.parse_args()

    folders = [args.data / d for d in COCO_DIRS]
    missing = [str(f) for f in folders if not f.is_dir()]
    if missing:
        print(f"skipped: {', '.join(missing)} absent (the COCO photos of ../shared/data; a user's machine has none)")
        return
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    cpu = torch.device("cpu")
    every = photos(folders)
    if args.limit:
        every = every.head(args.limit).reset_index(drop=True)
    labelled = every[(every.share >= args.min_share) & labelled_mask(every)]
    labelled = labelled.reset_index(drop=True)
    categories = labelled.category.tolist()
    unnamed = every.category[(every.share >= args.min_share) & ~labelled_mask(every)]
    result: dict = {
        "photos": len(every),
        "labelled_photos": len(labelled),
        "labelled_by_category": dict(sorted(labelled.category.value_counts().items(), key=lambda kv: (-kv[1], kv[0]))),
        "large_but_not_named_by_imagenet": dict(sorted(unnamed.value_counts().items(), key=lambda kv: (-kv[1], kv[0]))),
        "min_share": args.min_share,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "decode_threads": args.decode_threads,
        "rounds": args.rounds,
    }

    # The variants for near-duplicates, made once: [photo][variant] bytes, for every photo (labelled ones a subset).
    copies_of = {i: variants(b) for i, b in zip(every.image_id, every.bytes, strict=True)}
    label_rows = every.image_id.isin(set(labelled.image_id)).to_numpy()

    def embedding(vectors_of: Callable[[list[bytes]], np.ndarray]) -> dict:
        """Recall by category on the labelled photos, near-duplicate recall on them and on every photo."""
        originals = vectors_of(every.bytes.tolist())
        copies = vectors_of([b for i in every.image_id for b in copies_of[i]]).reshape(len(every), len(VARIANTS), -1)
        return {
            "by_category": category_recall(originals[label_rows], categories),  # labelled keeps every's order
            "near_duplicates": {
                "labelled": near_dup_recall(originals[label_rows], copies[label_rows]),
                "all": near_dup_recall(originals, copies),
            },
        }

    embeddings: dict = {}
    with tempfile.TemporaryDirectory(prefix="lakelens-photo-models-") as registry:
        install_pretrained(registry)
        for name in REGISTRY_MODELS:
            manifest, weights = read_entry(registry, name)
            model = cached_model(manifest, weights, cpu)  # channels last, as the annotate UDF prepares it
            result[name] = model_figures(model, manifest, labelled, every, args)
            embeddings[name] = embedding(
                partial(embed, model, manifest, batch_size=args.batch_size, threads=args.decode_threads)
            )
    scene_model, scene_manifest = load_model(BUNDLED, "embedder")
    embeddings[f"scene embedder ({scene_manifest.name} {scene_manifest.version})"] = embedding(
        partial(embed, scene_model, scene_manifest, batch_size=args.batch_size, threads=args.decode_threads)
    )
    embeddings["raw pixels 32x32"] = embedding(raw_pixels)
    result["embeddings"] = embeddings
    print(json.dumps(_rounded(result), indent=2))


if __name__ == "__main__":
    main()
