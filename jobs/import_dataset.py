"""Import labelled data into lake tables: ``python -m jobs.import_dataset DATASET --dir DIR``.

- fashion-mnist: idx files (Debian's ``dataset-fashion-mnist`` puts both splits in /usr/share/datasets/fashion-mnist);
  each image becomes a PNG row (image_id = SHA-256 of its bytes) with label, class name and split, in
  ``fashion_mnist``.
- scenes: the ``ground_truth.parquet`` of ``jobs.synth`` folders, in ``scene_truth``; the images themselves come in
  through ``jobs.ingest`` and join by image_id.
- coco: COCO photos' objects, boxes, semantic masks and captions from coco128-style (YOLO labels) and
  coco_mini-style (official JSON) folders, in ``coco_truth``; ingest the photos to join them by image_id.

Each import replaces the table's rows, so a re-run is idempotent.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
from PIL import Image

from lakelens.cli import config_from_args, job_parser, run_job
from lakelens.coco import coco_rows
from lakelens.idx import read_idx
from lakelens.lake import qualified, replace
from lakelens.scenes import SCENE_MASK_CLASSES
from lakelens.schemas import COCO_TRUTH, FASHION_MNIST, SCENE_TRUTH
from lakelens.spark import build_session

FASHION_CLASSES = ["t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                   "ankle boot"]  # fmt: skip
FASHION_SPLITS = {"train": "train", "test": "t10k"}
DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"


def fashion_mnist_rows(folder: Path) -> pd.DataFrame:
    """Rows (image_id, bytes, label, class_name, split, index) for every split whose files are in ``folder``."""
    parts = []
    for split, prefix in FASHION_SPLITS.items():
        images_file = folder / f"{prefix}-images-idx3-ubyte.gz"
        if not images_file.exists():
            continue
        images, labels = read_idx(images_file), read_idx(folder / f"{prefix}-labels-idx1-ubyte.gz")
        if len(images) != len(labels):
            raise ValueError(f"{folder}: {len(images)} {split} images but {len(labels)} labels")
        encoded = [_png(img) for img in images]
        parts.append(
            pd.DataFrame(
                {
                    "image_id": [hashlib.sha256(b).hexdigest() for b in encoded],
                    "bytes": encoded,
                    "label": labels.astype("int32"),
                    "class_name": [FASHION_CLASSES[i] for i in labels],
                    "split": split,
                    "index": range(len(images)),
                }
            )
        )
    if not parts:
        raise FileNotFoundError(f"no Fashion-MNIST idx files in {folder} (apt-get install dataset-fashion-mnist)")
    return pd.concat(parts, ignore_index=True)


def scene_truth_rows(folder: Path) -> pd.DataFrame:
    """The ground truth of one ``jobs.synth`` folder, with the folder as ``source``."""
    path = folder / "ground_truth.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"no ground_truth.parquet in {folder} (make one with jobs.synth)")
    rows = pq.read_table(path).to_pandas(integer_object_nulls=True)  # null groups stay null, not NaN
    rows["source"] = str(folder.resolve())
    rows["mask_classes"] = [list(SCENE_MASK_CLASSES)] * len(rows)
    return rows


def _png(pixels) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels, "L").save(buf, format="PNG")
    return buf.getvalue()


# name -> (rows of one folder, table, the columns that identify a row across folders)
DATASETS = {
    "fashion-mnist": (fashion_mnist_rows, FASHION_MNIST, ["split", "index"]),
    "scenes": (scene_truth_rows, SCENE_TRUTH, ["image_id"]),
    "coco": (coco_rows, COCO_TRUTH, ["image_id"]),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = job_parser("jobs.import_dataset", __doc__.splitlines()[0])
    parser.add_argument("dataset", choices=sorted(DATASETS), help="which dataset to import as a lake table")
    parser.add_argument("--dir", action="append", help=f"folder(s) to import (fashion-mnist default: {DEFAULT_DIR})")
    args = parser.parse_args(argv)
    cfg = config_from_args(args)
    read_rows, spec, key = DATASETS[args.dataset]
    if not args.dir and args.dataset != "fashion-mnist":
        parser.error(f"{args.dataset} needs --dir")
    rows = pd.concat([read_rows(Path(d)) for d in (args.dir or [DEFAULT_DIR])], ignore_index=True)
    rows = rows.drop_duplicates(key)
    spark = build_session(cfg)
    # pandas to Spark with a schema matches columns by position: order them as the table declares.
    replace(spark.createDataFrame(rows[spec.columns], spec.schema).repartition(16), cfg, spec)
    print(f"imported {args.dataset}: {len(rows)} rows into {qualified(cfg, spec)}")
    return 0


if __name__ == "__main__":
    run_job(main)
