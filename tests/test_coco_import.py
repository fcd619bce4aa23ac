"""COCO ground truth from ../shared/data into ``coco_truth`` (skipped where that folder is absent)."""

from __future__ import annotations

import io
import json

import numpy as np
from conftest import shared_folder
from PIL import Image

from jobs.import_dataset import main as import_main
from lakelens.coco import coco128_rows, coco_mini_rows
from lakelens.lake import read_table
from lakelens.schemas import COCO_TRUTH


def test_coco128_rows_match_the_yolo_labels_and_masks() -> None:
    folder = shared_folder("coco128")
    rows = coco128_rows(folder).set_index("coco_id")
    assert len(rows) == 256 and rows["image_id"].is_unique
    assert (rows["split"].value_counts().to_dict()) == {"train": 128, "val": 128}
    labels = folder / "object_detection/labels"
    # Two train label files name images that the folder lacks; every other line is one object.
    expected = sum(
        len(f.read_text().split()) // 5
        for f in labels.rglob("*.txt")
        if (folder / "images" / f.parent.name / f"{f.stem}.jpg").exists()
    )
    assert sum(map(len, rows["labels"])) == expected == 941 + 898 - 12

    first = rows.loc[139]  # val2017/000000000139.jpg, 640x426
    lines = (folder / "object_detection/labels/val2017/000000000139.txt").read_text().split("\n")
    cls, cx, cy, w, h = lines[0].split()
    box = first["boxes"][0]
    assert (first["width"], first["height"]) == (640, 426)
    assert abs(box["x0"] + box["w"] / 2 - float(cx) * 640) <= 1 and abs(box["h"] - float(h) * 426) <= 1
    assert len(first["labels"]) == len([line for line in lines if line.strip()])

    mask = np.asarray(Image.open(io.BytesIO(first["mask"])))
    original = np.asarray(Image.open(folder / "semantic_segmentation/masks/val2017/000000000139.png"))
    classes = first["mask_classes"]
    assert mask.shape == original.shape and classes[0] == "unlabeled" and len(classes) == 130
    # Re-numbered values keep the class: "person" (panoptic id 1) where the original says 1.
    assert set(mask[original == 1].tolist()) == {classes.index("person")}

    captions = json.loads((folder / "captions_val2017_coco128.json").read_text())["annotations"]
    assert sorted(first["captions"]) == sorted(c["caption"].strip() for c in captions if c["image_id"] == 139)
    assert rows.loc[rows["split"] == "train", "caption"].isna().all()


def test_coco_mini_rows_follow_the_official_json() -> None:
    folder = shared_folder("coco_mini")
    rows = coco_mini_rows(folder)
    assert rows["split"].value_counts().to_dict() == {"val": 159, "train": 80}
    instances = json.loads((folder / "annotations/instances_train2017.json").read_text())
    assert sum(map(len, rows.loc[rows["split"] == "train", "labels"])) == len(instances["annotations"])
    assert rows["mask"].isna().all() and rows["caption"].notna().all()


def test_import_writes_coco_truth_once(spark, cfg) -> None:
    folders = [str(shared_folder("coco128")), str(shared_folder("coco_mini"))]
    common = ["--lake", cfg.lake.root, "--set", f"lake.database={cfg.lake.database}", "--set", "spark.master=local[2]"]
    for _ in range(2):  # a re-run replaces the rows
        assert import_main([*common, "coco", "--dir", folders[0], "--dir", folders[1]]) == 0
    table = read_table(spark, cfg, COCO_TRUTH)
    assert table.count() == 256 + 239 - 4 and table.columns == COCO_TRUTH.columns  # 4 photos are in both
    assert table.where("source = 'coco_mini' and size(captions) >= 5").count() == 239 - 4
