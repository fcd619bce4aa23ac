"""idx files and the Fashion-MNIST import rows."""

from __future__ import annotations

import gzip
import io
import struct
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_folder
from PIL import Image

from jobs.import_dataset import fashion_mnist_rows
from lakelens.idx import read_idx


def write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_read_idx_round_trip_and_bad_files(tmp_path: Path) -> None:
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "x-idx3-ubyte.gz", images)
    assert np.array_equal(read_idx(tmp_path / "x-idx3-ubyte.gz"), images)
    (tmp_path / "bad").write_bytes(b"\x00\x00\x0d\x01" + b"\x00" * 8)
    with pytest.raises(ValueError, match="not an unsigned-byte idx file"):
        read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(struct.pack(">HBBI", 0, 8, 1, 5) + b"\x01\x02")
    with pytest.raises(ValueError, match=r"header says \(5,\), payload holds 2 bytes"):
        read_idx(tmp_path / "short")


def test_fashion_rows_are_pngs_with_labels(tmp_path: Path) -> None:
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", images)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.array([0, 9, 3, 3, 1]))
    rows = fashion_mnist_rows(tmp_path)
    assert list(rows["split"]) == ["train"] * 5 and list(rows["label"]) == [0, 9, 3, 3, 1]
    assert list(rows["class_name"]) == ["t-shirt/top", "ankle boot", "dress", "dress", "trouser"]
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(rows["bytes"][1]))), images[1])
    with pytest.raises(FileNotFoundError, match="no Fashion-MNIST idx files"):
        fashion_mnist_rows(tmp_path / "empty")


def test_shared_test_split_imports_whole() -> None:
    rows = fashion_mnist_rows(shared_folder("fashion_mnist_test"))
    assert len(rows) == 10000 and set(rows["split"]) == {"test"}
    assert rows["label"].value_counts().to_dict() == {label: 1000 for label in range(10)}
