"""Ground truth of COCO photos as lake rows: the YOLO-format ``coco128`` and the official-JSON ``coco_mini``.

One row per image: object names and pixel boxes, the semantic class mask (coco128 only; values re-numbered to
0..K-1 in the order of ``mask_classes``), and every caption. Images are matched to the ``images`` table by
``image_id``, the SHA-256 of the file's bytes, as ``jobs.ingest`` computes it.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from PIL import Image

SPLITS = ("train2017", "val2017")


def coco_rows(folder: Path) -> pd.DataFrame:
    """Rows of a ``coco128``-style (YOLO labels) or ``coco_mini``-style (official JSON) folder."""
    if (folder / "object_detection").is_dir():
        return coco128_rows(folder)
    if (folder / "annotations").is_dir():
        return coco_mini_rows(folder)
    raise FileNotFoundError(f"{folder} holds neither object_detection/ (YOLO labels) nor annotations/ (COCO JSON)")


def coco128_rows(folder: Path) -> pd.DataFrame:
    """Rows of a ``coco128`` folder (images/<split>/*.jpg, object_detection YOLO labels, semantic masks, val
    captions)."""
    names = yaml.safe_load((folder / "object_detection" / "config.yaml").read_text())["names"]
    semantic = yaml.safe_load((folder / "semantic_segmentation" / "config.yaml").read_text())["classes"]
    mask_ids = sorted(semantic)
    lut = np.zeros(256, np.uint8)
    lut[mask_ids] = np.arange(len(mask_ids), dtype=np.uint8)
    mask_classes = [semantic[i] for i in mask_ids]
    captions = _captions_by_coco_id([folder / "captions_val2017_coco128.json"])
    rows = []
    for split in SPLITS:
        for image in sorted((folder / "images" / split).glob("*.jpg")):
            data = image.read_bytes()
            width, height = Image.open(io.BytesIO(data)).size
            labels, boxes = [], []
            label_file = folder / "object_detection" / "labels" / split / f"{image.stem}.txt"
            for line in label_file.read_text().splitlines() if label_file.exists() else []:
                cls, cx, cy, w, h = line.split()
                labels.append(names[int(cls)])
                boxes.append(_box((float(cx) - float(w) / 2) * width, (float(cy) - float(h) / 2) * height,
                                  float(w) * width, float(h) * height))  # fmt: skip
            mask_file = folder / "semantic_segmentation" / "masks" / split / f"{image.stem}.png"
            mask = _png(lut[np.asarray(Image.open(mask_file))]) if mask_file.exists() else None
            rows.append(_row(data, image, folder, "coco128", split, int(image.stem), width, height, labels, boxes,
                             mask, mask_classes, captions.get(int(image.stem), [])))  # fmt: skip
    return pd.DataFrame(rows)


def coco_mini_rows(folder: Path) -> pd.DataFrame:
    """Rows of a ``coco_mini`` folder (official COCO JSON instances and captions; no semantic masks)."""
    notes = folder / "annotations"
    captions = _captions_by_coco_id(sorted(notes.glob("captions_*.json")))
    rows = []
    for split in SPLITS:
        objects: dict[int, list[dict[str, Any]]] = defaultdict(list)
        instances = notes / f"instances_{split}.json"
        if instances.exists():
            content = json.loads(instances.read_text())
            names = {c["id"]: c["name"] for c in content["categories"]}
            for note in content["annotations"]:
                objects[note["image_id"]].append({"name": names[note["category_id"]], "bbox": note["bbox"]})
        for image in sorted((folder / split).glob("*.jpg")):
            data = image.read_bytes()
            width, height = Image.open(io.BytesIO(data)).size
            found = objects.get(int(image.stem), [])
            rows.append(_row(data, image, folder, "coco_mini", split, int(image.stem), width, height,
                             [o["name"] for o in found], [_box(*o["bbox"]) for o in found], None, None,
                             captions.get(int(image.stem), [])))  # fmt: skip
    return pd.DataFrame(rows)


def _row(data: bytes, image: Path, folder: Path, source: str, split: str, coco_id: int, width: int, height: int,
         labels: list[str], boxes: list[dict[str, int]], mask: bytes | None, mask_classes: list[str] | None,
         captions: list[str]) -> dict[str, Any]:  # fmt: skip
    return {
        "image_id": hashlib.sha256(data).hexdigest(),
        "file": str(image.relative_to(folder)),
        "source": source,
        "split": split.removesuffix("2017"),
        "coco_id": coco_id,
        "width": width,
        "height": height,
        "labels": labels,
        "boxes": boxes,
        "mask": mask,
        "mask_classes": mask_classes,
        "caption": captions[0] if captions else None,
        "captions": captions,
    }


def _box(x0: float, y0: float, w: float, h: float) -> dict[str, int]:
    return {"x0": round(x0), "y0": round(y0), "w": max(round(w), 1), "h": max(round(h), 1)}


def caption_texts(path: Path) -> list[str]:
    """Captions of a COCO captions JSON file (``annotations[].caption``) or of a text file, one a line."""
    text = path.read_text()
    if path.suffix.lower() == ".json":
        return [note["caption"].strip() for note in json.loads(text)["annotations"]]
    return [line.strip() for line in text.splitlines() if line.strip()]


def _captions_by_coco_id(files: list[Path]) -> dict[int, list[str]]:
    found: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for file in files:
        if file.exists():
            for note in json.loads(file.read_text())["annotations"]:
                found[note["image_id"]].append((note["id"], note["caption"].strip()))
    return {coco_id: [text for _, text in sorted(notes)] for coco_id, notes in found.items()}


def _png(mask: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(mask, "L").save(buf, format="PNG")
    return buf.getvalue()
