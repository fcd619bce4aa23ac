"""Training data from lake tables through petastorm: Parquet rows of image bytes -> batches of torch tensors.

The reader and loader live inside ``with`` blocks; decoding is a module-level (picklable) transform. Nothing
here knows Spark: a table is a Parquet dataset URL (``file:///...``, ``hdfs://...``, ``s3://...``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch
from petastorm import make_batch_reader
from petastorm.pytorch import DataLoader
from petastorm.transform import TransformSpec
from PIL import Image

from lakelens.imaging import decode_rgb

# petastorm 0.12.1 reads through pyarrow's legacy ParquetDataset, deprecated but present in the pinned pyarrow 14;
# its warnings say nothing a user can act on.
warnings.filterwarnings("ignore", category=FutureWarning, module=r"petastorm\.")


MIN_SIZE = 8  # the least input side a preprocessing may ask for: every model here halves it at least three times


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
        if not isinstance(self.size, int) or isinstance(self.size, bool) or self.size < MIN_SIZE:
            raise ValueError(f"preprocessing size must be a whole number of pixels >= {MIN_SIZE}, got {self.size!r}")
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in self.mean + self.std):
            raise ValueError(f"preprocessing mean and std must be finite numbers, got {self.mean} and {self.std}")
        if min(self.std) <= 0:
            raise ValueError(f"preprocessing std must be > 0 per channel, got {self.std}")

    def to_manifest(self) -> dict[str, Any]:
        """The JSON form a registry manifest keeps under ``preprocessing``."""
        return {"size": self.size, "channels": self.channels, "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_manifest(cls, fields: dict[str, Any]) -> Preprocessing:
        """The preprocessing a registry manifest records (lists back to tuples)."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})


def to_tensor_array(data: bytes, prep: Preprocessing) -> np.ndarray:
    """Image bytes -> float32 [C, size, size], upright (EXIF applied), resized, normalised."""
    return preprocess_rgb(decode_rgb(data), prep)


def preprocess_rgb(rgb: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """Decoded pixels uint8 [H, W, 3] -> float32 [C, size, size], resized, normalised."""
    img = Image.fromarray(rgb)
    if prep.channels == 1:
        img = img.convert("L")
    img = img.resize((prep.size, prep.size), Image.BILINEAR)
    pixels = np.asarray(img, dtype=np.float32).reshape(prep.size, prep.size, prep.channels) / 255.0
    pixels = (pixels - np.asarray(prep.mean, np.float32)) / np.asarray(prep.std, np.float32)
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


def to_unit_pixels(normalised: torch.Tensor, prep: Preprocessing) -> torch.Tensor:
    """Normalised pixels [N, C, H, W] back to [0, 1] (clamped), as ``prep`` made them."""
    mean = torch.tensor(prep.mean, device=normalised.device).view(1, -1, 1, 1)
    std = torch.tensor(prep.std, device=normalised.device).view(1, -1, 1, 1)
    return (normalised.float() * std + mean).clamp(0, 1)


def multi_hot(ids: np.ndarray, num_classes: int) -> np.ndarray:
    """Class ids (any length) -> float32 [num_classes] with 1 at each id."""
    target = np.zeros(num_classes, np.float32)
    target[np.asarray(ids, dtype=np.int64)] = 1.0
    return target


class Targets(Protocol):
    """What a model learns from, beside the pixels: snapshot columns in, fixed-shape arrays out (picklable)."""

    @property
    def columns(self) -> tuple[str, ...]:
        """The snapshot columns read for the targets."""

    def fields(self) -> list[tuple[str, Any, tuple[int, ...]]]:
        """petastorm fields made: (name, numpy dtype, shape of one row)."""

    def decode(self, rows: pd.DataFrame) -> dict[str, list]:
        """One value per row for every field, from the ``columns`` of ``rows``."""


@dataclass(frozen=True)
class Labels:
    """``label``: an int64 class id, or with ``num_classes`` (multi-label: the column holds lists of class ids)
    float32 [num_classes] multi-hot."""

    num_classes: int | None = None
    columns: tuple[str, ...] = ("label",)

    def fields(self) -> list[tuple[str, Any, tuple[int, ...]]]:
        if self.num_classes is None:
            return [("label", np.int64, ())]
        return [("label", np.float32, (self.num_classes,))]

    def decode(self, rows: pd.DataFrame) -> dict[str, list]:
        if self.num_classes is None:
            return {"label": list(rows["label"].astype(np.int64))}
        return {"label": [multi_hot(ids, self.num_classes) for ids in rows["label"]]}


@dataclass(frozen=True)
class NoTargets:
    """The image is the target: no snapshot column beside its bytes."""

    columns: tuple[str, ...] = ()

    def fields(self) -> list[tuple[str, Any, tuple[int, ...]]]:
        return []

    def decode(self, rows: pd.DataFrame) -> dict[str, list]:
        return {}


def decode_rows(rows: pd.DataFrame, prep: Preprocessing, targets: Targets) -> pd.DataFrame:
    """petastorm transform: (bytes, target columns) rows -> (pixels float32 [C, H, W], target fields) rows."""
    pixels = [to_tensor_array(b, prep) for b in rows["bytes"]]
    return pd.DataFrame({"pixels": pixels, **targets.decode(rows)})


@contextmanager
def table_loader(
    url: str,
    prep: Preprocessing,
    batch_size: int,
    targets: Targets | None = None,
    num_epochs: int | None = 1,
    shuffle: bool = True,
    seed: int = 0,
    workers: int = 2,
) -> Iterator[DataLoader]:
    """A torch DataLoader over a training snapshot (Parquet with ``bytes`` and target columns): batches
    {"pixels": float32 [N, C, H, W], and each target field}; by default ``Labels()``: "label" int64 [N].

    Args:
        url: the table's Parquet dataset, as petastorm takes it (``file:///abs/path`` for local files).
        prep: decoding and normalisation.
        batch_size: rows per batch.
        targets: the target fields and how they are decoded.
        num_epochs: passes over the table (None: endless).
        shuffle: shuffle row groups and rows (with a seeded buffer) for training; off for evaluation.
        workers: petastorm reader threads.
    """
    targets = targets or Labels()
    fields = targets.fields()
    transform = TransformSpec(
        partial(decode_rows, prep=prep, targets=targets),
        edit_fields=[("pixels", np.float32, (prep.channels, prep.size, prep.size), False)]
        + [(name, dtype, shape, False) for name, dtype, shape in fields],
        selected_fields=["pixels", *(name for name, _, _ in fields)],
    )
    with make_batch_reader(
        url,
        schema_fields=["bytes", *targets.columns],
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
