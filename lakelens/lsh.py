"""LSH signatures and banding, Spark-free: MinHash exactly as datasketch makes and bands it, and random-hyperplane
(SimHash) bits of embedding vectors.

The band keys are datasketch's own: ``MinHashLSH`` with the same ``(b, r)`` puts two signatures in one bucket of
band ``i`` exactly when :func:`minhash_band_keys` gives them the same key ``i`` (a parity test checks it).

Example:
    >>> params = MinHashParams(num_perm=128, seed=1, threshold=0.5)
    >>> signatures = minhash_signatures([token_bytes(perceptual_tokens(rgb)) for rgb in images], params)
    >>> keys = minhash_band_keys(signatures, *params.bands)     # [N][b] bytes
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import datasketch
import numpy as np
from datasketch import MinHash
from datasketch.lsh import _optimal_param

SCHEME = "affine32"  # datasketch 2.x's default permutation scheme; 1.x ("legacy") hashes differ
MINHASH_DTYPE = np.uint32


@functools.cache
def optimal_bands(threshold: float, num_perm: int, weights: tuple[float, float] = (0.5, 0.5)) -> tuple[int, int]:
    """(b, r) that datasketch's ``MinHashLSH(threshold, num_perm, weights)`` picks (its own search, cached)."""
    return _optimal_param(threshold, num_perm, *weights)


@dataclass(frozen=True)
class MinHashParams:
    """Everything that makes a near-duplicate signature and its buckets; rows of different params never mix."""

    num_perm: int = 128
    seed: int = 1
    threshold: float = 0.5
    recipe: str = "v2"  # perceptual token recipe (lakelens.perceptual)
    scheme: str = SCHEME
    library: str = f"datasketch {datasketch.__version__}"

    @property
    def bands(self) -> tuple[int, int]:
        return optimal_bands(self.threshold, self.num_perm)

    @property
    def params_id(self) -> str:
        return params_id("minhash", asdict(self) | {"bands": list(self.bands)})


@dataclass(frozen=True)
class SimHashParams:
    """Random-hyperplane signatures of one embedding model's vectors, banded into ``bands`` x ``rows`` bits."""

    model: str  # the embedding model "name:version" whose vectors are hashed
    dim: int
    bands: int = 16
    rows: int = 8
    seed: int = 1

    @property
    def bits(self) -> int:
        return self.bands * self.rows

    @property
    def params_id(self) -> str:
        return params_id("simhash", asdict(self))


def params_id(kind: str, fields: dict) -> str:
    """A short stable id of a signature scheme and all its parameters."""
    blob = json.dumps({"kind": kind, **fields}, sort_keys=True)
    return f"{kind}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def minhash_signatures(token_sets: Sequence[Sequence[bytes]], params: MinHashParams) -> np.ndarray:
    """MinHash hash values [N, num_perm] (uint32) of each token set, through datasketch's batch API."""
    if not token_sets:
        return np.zeros((0, params.num_perm), MINHASH_DTYPE)
    hashes = MinHash.bulk(token_sets, num_perm=params.num_perm, seed=params.seed, scheme=params.scheme)
    return np.stack([m.hashvalues for m in hashes]).astype(MINHASH_DTYPE, copy=False)


def minhash_band_keys(signatures: np.ndarray, b: int, r: int) -> list[list[bytes]]:
    """Per signature, the key of each of its ``b`` bands: ``MinHashLSH``'s ``bytes(hv[i*r:(i+1)*r].byteswap())``."""
    swapped = np.ascontiguousarray(signatures[:, : b * r]).byteswap()
    width = r * signatures.itemsize
    return [[row[i * width : (i + 1) * width] for i in range(b)] for row in (s.tobytes() for s in swapped)]


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Estimated Jaccard similarity of two MinHash signatures (datasketch's ``MinHash.jaccard``)."""
    return float(np.count_nonzero(a == b)) / len(a)


def hyperplanes(params: SimHashParams) -> np.ndarray:
    """The [dim, bits] random normal hyperplanes of ``params`` (the same on every executor for its seed)."""
    return np.random.default_rng(params.seed).standard_normal((params.dim, params.bits)).astype(np.float32)


def simhash_band_keys(vectors: np.ndarray, planes: np.ndarray, bands: int, rows: int) -> list[list[bytes]]:
    """Per vector, the key of each band: its ``rows`` sign bits against the band's hyperplanes, packed."""
    bits = (np.asarray(vectors, np.float32) @ planes) > 0
    packed = np.packbits(bits.reshape(len(bits), bands, rows), axis=2)
    return [[band.tobytes() for band in row] for row in packed]
