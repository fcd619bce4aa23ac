"""Import a labelled image data set into a lake table: ``python -m jobs.import_dataset fashion-mnist --dir DIR``.

Fashion-MNIST comes as idx files (Debian's ``dataset-fashion-mnist`` puts both splits in
/usr/share/datasets/fashion-mnist). Each image becomes a PNG row (image_id = SHA-256 of its bytes) with its
label, class name and split, in the table ``fashion_mnist`` (replaced on each import, so a re-run is idempotent).
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from PIL import Image

from lakelens.cli import config_from_args, job_parser, run_job
from lakelens.idx import read_idx
from lakelens.spark import build_session

log = logging.getLogger("lakelens.import")

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


def _png(pixels) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels, "L").save(buf, format="PNG")
    return buf.getvalue()


def main(argv: Sequence[str] | None = None) -> int:
    parser = job_parser("jobs.import_dataset", __doc__.splitlines()[0])
    parser.add_argument("dataset", choices=["fashion-mnist"])
    parser.add_argument("--dir", action="append", help=f"folder(s) with the idx files (default {DEFAULT_DIR})")
    args = parser.parse_args(argv)
    cfg = config_from_args(args)
    rows = pd.concat([fashion_mnist_rows(Path(d)) for d in (args.dir or [DEFAULT_DIR])], ignore_index=True)
    rows = rows.drop_duplicates(["split", "index"])
    spark = build_session(cfg)
    table = f"{cfg.lake.database}.fashion_mnist"
    schema = "image_id string, bytes binary, label int, class_name string, split string, index long"
    spark.createDataFrame(rows, schema).repartition(16).write.mode("overwrite").saveAsTable(table)
    counts = {r["split"]: r["count"] for r in spark.table(table).groupBy("split").count().collect()}
    print(f"imported fashion-mnist into {table}: {counts}")
    return 0


if __name__ == "__main__":
    run_job(main)
