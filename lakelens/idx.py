"""The idx-ubyte format of MNIST and Fashion-MNIST (optionally gzip-compressed), read with numpy."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np


def read_idx(path: str | Path) -> np.ndarray:
    """An idx file as a uint8 array: [N, H, W] for images, [N] for labels.

    The header is a big-endian magic number (0x0000 08 ndim: unsigned bytes) and ndim big-endian sizes.
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte idx file (magic {data[:4].hex()})")
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    payload = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if payload.size != int(np.prod(dims)):
        raise ValueError(f"{path}: header says {dims}, payload holds {payload.size} bytes")
    return payload.reshape(dims)
