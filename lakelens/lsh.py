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
import math
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


def screen_max_differ(num_perm: int, threshold: float) -> int:
    """Most low bits (one of each hash value) in which two signatures can differ and still be verified at
    ``threshold``: equal hash values have equal low bits, so a pair differing in more is not a near-duplicate.
    One bit of slack covers the float rounding of the verified similarity."""
    return num_perm - math.ceil(threshold * num_perm) + 1


Bucket = tuple[int, bytes]  # (band, key)


@dataclass(frozen=True)
class NightBuckets:
    """A run's new MinHash signatures and the buckets they are in, so that any image can be paired with the new
    images it shares a bucket with and verified against them, with no pair shipped anywhere.

    The candidates are those of the banding: two images sharing a bucket, at least one of them new; in a hot
    bucket (``leaders``: bucket -> its smallest image_id, for buckets over the cap) only its leader and each other
    member. Each pair comes once: from its old image, or from the smaller id of two new ones.
    """

    ids: tuple[str, ...]
    signatures: np.ndarray  # [m, num_perm] uint32, a row per id
    members: dict[Bucket, tuple[int, ...]]  # bucket -> rows of the new images in it
    leaders: dict[Bucket, str]

    @classmethod
    def build(
        cls, ids: Sequence[str], signatures: np.ndarray, keys: Sequence[Sequence[bytes]], leaders: dict[Bucket, str]
    ) -> NightBuckets:
        """From the new images' ids, signatures and band keys (one list of ``b`` keys per image)."""
        members: dict[Bucket, list[int]] = {}
        for row, image_keys in enumerate(keys):
            for band, key in enumerate(image_keys):
                members.setdefault((band, bytes(key)), []).append(row)
        grouped = {bucket: tuple(rows) for bucket, rows in members.items()}
        return cls(tuple(ids), np.asarray(signatures, MINHASH_DTYPE), grouped, dict(leaders))

    @functools.cached_property
    def rows(self) -> dict[str, int]:
        return {image_id: row for row, image_id in enumerate(self.ids)}

    def partners(self, image_id: str, buckets: Sequence[Bucket]) -> list[int]:
        """Rows of the new images that ``image_id`` is a candidate pair with through its ``buckets``."""
        own = self.rows.get(image_id)
        found: set[int] = set()
        for bucket in buckets:
            rows = self.members.get(bucket, ())
            leader = self.leaders.get(bucket)
            if leader is None or leader == image_id:
                found.update(rows)
            elif leader in self.rows:
                found.add(self.rows[leader])
        if own is None:
            return sorted(found)
        return sorted(p for p in found if self.ids[p] > image_id)

    def verify(
        self, image_id: str, signature: np.ndarray, buckets: Sequence[Bucket], threshold: float
    ) -> tuple[int, list[tuple[str, float]]]:
        """(number of candidates, [(partner id, estimated Jaccard)] of those at least ``threshold``)."""
        partners = self.partners(image_id, buckets)
        equal = np.count_nonzero(self.signatures[partners] == np.asarray(signature, MINHASH_DTYPE), axis=1)
        # float32 as the Spark path's cast to float; compared with the threshold as a double, as Spark does
        similarity = (equal / self.signatures.shape[1]).astype(np.float32)
        kept = [(self.ids[p], float(s)) for p, s in zip(partners, similarity, strict=True) if float(s) >= threshold]
        return len(partners), kept


def hyperplanes(params: SimHashParams) -> np.ndarray:
    """The [dim, bits] random normal hyperplanes of ``params`` (the same on every executor for its seed)."""
    return np.random.default_rng(params.seed).standard_normal((params.dim, params.bits)).astype(np.float32)


def simhash_band_keys(vectors: np.ndarray, planes: np.ndarray, bands: int, rows: int) -> list[list[bytes]]:
    """Per vector, the key of each band: its ``rows`` sign bits against the band's hyperplanes, packed."""
    bits = (np.asarray(vectors, np.float32) @ planes) > 0
    packed = np.packbits(bits.reshape(len(bits), bands, rows), axis=2)
    return [[band.tobytes() for band in row] for row in packed]


def _bit_values(rows: int) -> np.ndarray:
    """uint64 [rows]: the value of each bit of a band in its key read as a big-endian integer (``np.packbits``
    puts a band's first bit highest, padding the last byte with zeros)."""
    width = 8 * ((rows + 7) // 8)
    return np.left_shift(np.uint64(1), (width - 1 - np.arange(rows)).astype(np.uint64))


def simhash_codes(vectors: np.ndarray, planes: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """uint64 [N, bands]: each band's key (:func:`simhash_band_keys`) as a big-endian integer, for vectors [N, dim]."""
    bits = ((np.asarray(vectors, np.float32) @ planes) > 0).reshape(len(vectors), bands, rows)
    return (bits * _bit_values(rows)).sum(axis=2, dtype=np.uint64)


def simhash_probe_codes(queries: np.ndarray, planes: np.ndarray, bands: int, rows: int, probes: int) -> np.ndarray:
    """uint64 [Q, bands, 1 + probes]: the band keys (as :func:`simhash_codes`) each query [Q, dim] probes: its own,
    then its key with one of its ``probes`` least certain bits (the projections nearest zero) flipped (multi-probe
    LSH, Lv et al. 2007): a near vector that one hyperplane splits from the query still shares a probed bucket."""
    projections = (np.asarray(queries, np.float32) @ planes).reshape(len(queries), bands, rows)
    values = _bit_values(rows)
    own = ((projections > 0) * values).sum(axis=2, dtype=np.uint64)
    flips = np.argsort(np.abs(projections), axis=2, kind="stable")[:, :, : min(probes, rows)]
    return np.concatenate([own[:, :, None], own[:, :, None] ^ values[flips]], axis=2)


def code_key(code: int, rows: int) -> bytes:
    """The band key bytes (as ``lsh_buckets`` stores them) of a code of :func:`simhash_codes`."""
    return int(code).to_bytes((rows + 7) // 8, "big")
