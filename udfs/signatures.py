"""LSH signature UDFs: MinHash of perceptual tokens per image, and SimHash band keys of embedding vectors.

Spark-free cores (frames in, frames out) wrapped for ``mapInPandas``. Bad rows are data: an ingest error or an
undecodable image becomes a row with ``error`` and no signature.

Example:
    >>> images.select("image_id", "bytes", "error").mapInPandas(make_minhash_udf(params), MINHASH_UDF_SCHEMA)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd
from pyspark.sql.types import ArrayType, BinaryType, IntegerType, LongType, StringType, StructField, StructType

from lakelens.imaging import ImageDecodeError, decode_rgb_for
from lakelens.lsh import (
    MinHashParams,
    SimHashParams,
    hyperplanes,
    minhash_band_keys,
    minhash_signatures,
    simhash_band_keys,
)
from lakelens.perceptual import SIDE, perceptual_tokens, token_bytes

MINHASH_UDF_SCHEMA = StructType(
    [
        StructField("image_id", StringType(), False),
        StructField("minhash", ArrayType(LongType())),
        StructField("tokens", IntegerType()),
        StructField("keys", ArrayType(BinaryType())),
        StructField("error", StringType()),
    ]
)
SIMHASH_UDF_SCHEMA = StructType(
    [StructField("image_id", StringType(), False), StructField("keys", ArrayType(BinaryType()))]
)


def image_tokens(data: bytes | None, error: str | None, recipe: str, max_pixels: int | None) -> np.ndarray | str:
    """The image's perceptual tokens, or why there are none (its ingest error, an undecodable image)."""
    if error is not None and not pd.isna(error):
        return str(error)
    if data is None:
        return "no image bytes"
    try:
        rgb, _ = decode_rgb_for(bytes(data), SIDE, max_pixels)
    except ImageDecodeError as exc:
        return f"undecodable image: {exc}"
    return perceptual_tokens(rgb, recipe)


def minhash_frame(frame: pd.DataFrame, params: MinHashParams, max_pixels: int | None = None) -> pd.DataFrame:
    """(image_id, bytes, error) -> (image_id, minhash, tokens, keys, error): one row per input row, in order."""
    found = [image_tokens(d, e, params.recipe, max_pixels) for d, e in zip(frame["bytes"], frame["error"], strict=True)]
    good = [i for i, t in enumerate(found) if not isinstance(t, str)]
    signatures = minhash_signatures([token_bytes(found[i]) for i in good], params)
    keys = minhash_band_keys(signatures, *params.bands)
    minhash: list = [None] * len(found)
    band_keys: list = [None] * len(found)
    for row, signature, row_keys in zip(good, signatures, keys, strict=True):
        minhash[row] = signature.astype(np.int64)
        band_keys[row] = row_keys
    return pd.DataFrame(
        {
            "image_id": frame["image_id"].to_numpy(),
            "minhash": minhash,
            "tokens": [None if isinstance(t, str) else len(t) for t in found],
            "keys": band_keys,
            "error": [t if isinstance(t, str) else None for t in found],
        }
    )


def make_minhash_udf(
    params: MinHashParams, max_pixels: int | None = None
) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """A ``mapInPandas`` function: (image_id, bytes, error) -> :data:`MINHASH_UDF_SCHEMA`."""

    def signatures(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for frame in frames:
            yield minhash_frame(frame, params, max_pixels)

    return signatures


def simhash_frame(frame: pd.DataFrame, params: SimHashParams, planes: np.ndarray) -> pd.DataFrame:
    """(image_id, vector) -> (image_id, keys): each vector's ``params.bands`` band keys."""
    if frame.empty:
        return pd.DataFrame({"image_id": [], "keys": []})
    vectors = np.stack([np.asarray(v, np.float32) for v in frame["vector"]])
    keys = simhash_band_keys(vectors, planes, params.bands, params.rows)
    return pd.DataFrame({"image_id": frame["image_id"].to_numpy(), "keys": keys})


def make_simhash_udf(params: SimHashParams) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """A ``mapInPandas`` function: (image_id, vector) -> :data:`SIMHASH_UDF_SCHEMA`."""

    def signatures(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        planes = hyperplanes(params)
        for frame in frames:
            yield simhash_frame(frame, params, planes)

    return signatures
