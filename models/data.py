"""Training data from lake tables through petastorm: Parquet rows of image bytes -> batches of torch tensors.

The reader and loader live inside ``with`` blocks; decoding is a module-level (picklable) transform. Nothing
here knows Spark: a table is a Parquet dataset URL (``file:///...``, ``hdfs://...``, ``s3://...``).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
from petastorm import make_batch_reader
from petastorm.pytorch import DataLoader
from petastorm.transform import TransformSpec
from PIL import Image

from lakelens.imaging import decode_rgb

# petastorm 0.12.1 reads through pyarrow's legacy ParquetDataset, deprecated but present in the pinned pyarrow 14;
# its warnings say nothing a user can act on.
warnings.filterwarnings("ignore", category=FutureWarning, module=r"petastorm\.")


@dataclass(frozen=True)
class Preprocessing:
    """How image bytes become model input: float32 [C, size, size], (pixel / 255 - mean) / std per channel."""

    size: int
    channels: int = 3
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.25, 0.25, 0.25)

    def __post_init__(self) -> None:
        if self.channels not in (1, 3) or len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError(f"preprocessing needs 1 or 3 channels with one mean and std each, got {self}")


def to_tensor_array(data: bytes, prep: Preprocessing) -> np.ndarray:
    """Image bytes -> float32 [C, size, size], upright (EXIF applied), resized, normalised."""
    img = Image.fromarray(decode_rgb(data))
    if prep.channels == 1:
        img = img.convert("L")
    img = img.resize((prep.size, prep.size), Image.BILINEAR)
    pixels = np.asarray(img, dtype=np.float32).reshape(prep.size, prep.size, prep.channels) / 255.0
    pixels = (pixels - np.asarray(prep.mean, np.float32)) / np.asarray(prep.std, np.float32)
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


def multi_hot(ids: np.ndarray, num_classes: int) -> np.ndarray:
    """Class ids (any length) -> float32 [num_classes] with 1 at each id."""
    target = np.zeros(num_classes, np.float32)
    target[np.asarray(ids, dtype=np.int64)] = 1.0
    return target


def decode_rows(
    rows: pd.DataFrame, prep: Preprocessing, bytes_field: str, label_field: str, num_classes: int | None
) -> pd.DataFrame:
    """petastorm transform: (bytes, label) rows -> (pixels float32 [C, H, W], label) rows.

    ``label`` is an int64 class id, or with ``num_classes`` (multi-label) a list of ids made float32 [K] multi-hot.
    """
    pixels = [to_tensor_array(b, prep) for b in rows[bytes_field]]
    if num_classes is None:
        return pd.DataFrame({"pixels": pixels, "label": rows[label_field].astype(np.int64).to_numpy()})
    return pd.DataFrame({"pixels": pixels, "label": [multi_hot(ids, num_classes) for ids in rows[label_field]]})


@contextmanager
def table_loader(
    url: str,
    prep: Preprocessing,
    batch_size: int,
    bytes_field: str = "bytes",
    label_field: str = "label",
    num_epochs: int | None = 1,
    shuffle: bool = True,
    seed: int = 0,
    workers: int = 2,
    num_classes: int | None = None,
) -> Iterator[DataLoader]:
    """A torch DataLoader over a Parquet table: batches {"pixels": float32 [N, C, H, W], "label": int64 [N]}, or
    with ``num_classes`` (multi-label: the label column holds lists of class ids) "label": float32 [N, K].

    Args:
        url: the table's Parquet dataset, as petastorm takes it (``file:///abs/path`` for local files).
        prep: decoding and normalisation.
        batch_size: rows per batch.
        num_epochs: passes over the table (None: endless).
        shuffle: shuffle row groups and rows (with a seeded buffer) for training; off for evaluation.
        workers: petastorm reader threads.
    """
    transform = TransformSpec(
        partial(decode_rows, prep=prep, bytes_field=bytes_field, label_field=label_field, num_classes=num_classes),
        edit_fields=[
            ("pixels", np.float32, (prep.channels, prep.size, prep.size), False),
            ("label", np.int64, (), False) if num_classes is None else ("label", np.float32, (num_classes,), False),
        ],
        selected_fields=["pixels", "label"],
    )
    with make_batch_reader(
        url,
        schema_fields=[bytes_field, label_field],
        transform_spec=transform,
        num_epochs=num_epochs,
        shuffle_row_groups=shuffle,
        seed=seed,
        workers_count=workers,
        reader_pool_type="thread",
    ) as reader:
        yield DataLoader(reader, batch_size=batch_size, shuffling_queue_capacity=8 * batch_size if shuffle else 0)


def petastorm_url(uri: str) -> str:
    """``file:/abs/path`` (Spark's form) as ``file:///abs/path`` (petastorm's); other URIs unchanged."""
    if uri.startswith("file:") and not uri.startswith("file:///"):
        return "file:///" + uri.removeprefix("file:").lstrip("/")
    return uri
