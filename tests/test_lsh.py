"""LSH signatures and banding without Spark: parity with datasketch, SimHash keys, perceptual tokens, the UDF core."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from datasketch import MinHash, MinHashLSH
from PIL import Image

from lakelens.lsh import (
    MinHashParams,
    SimHashParams,
    hyperplanes,
    jaccard,
    minhash_band_keys,
    minhash_signatures,
    optimal_bands,
    simhash_band_keys,
)
from lakelens.lsh_pairs import night_pairs
from lakelens.perceptual import perceptual_tokens, token_bytes
from lakelens.scenes.transforms import apply_transform
from udfs.signatures import minhash_frame


def token_sets(n_bases: int = 40, copies: int = 3, seed: int = 0) -> list[list[bytes]]:
    """Sets in families: each base set and copies of it with a few tokens swapped (Jaccard about 0.3-0.9)."""
    rng = np.random.default_rng(seed)
    sets = []
    for _ in range(n_bases):
        base = rng.choice(100_000, 80, replace=False)
        for _ in range(copies):
            keep = base[rng.random(80) > rng.uniform(0.0, 0.5)]
            sets.append(token_bytes(np.unique(np.concatenate([keep, rng.integers(0, 100_000, 10)]))))
    return sets


@pytest.mark.parametrize(("threshold", "num_perm"), [(0.3, 64), (0.45, 128), (0.5, 128), (0.8, 256)])
def test_bands_are_datasketchs_optimum(threshold: float, num_perm: int) -> None:
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    assert optimal_bands(threshold, num_perm) == (lsh.b, lsh.r)
    assert MinHashParams(num_perm=num_perm, threshold=threshold).bands == (lsh.b, lsh.r)


def test_signatures_are_datasketchs_minhashes() -> None:
    sets = token_sets(n_bases=5)
    params = MinHashParams(num_perm=64, seed=7)
    signatures = minhash_signatures(sets, params)
    for tokens, signature in zip(sets, signatures, strict=True):
        one = MinHash(num_perm=64, seed=7)
        one.update_batch(tokens)
        np.testing.assert_array_equal(signature, one.hashvalues)
    first = MinHash(num_perm=64, seed=7, hashvalues=signatures[0], scheme="affine32")
    second = MinHash(num_perm=64, seed=7, hashvalues=signatures[1], scheme="affine32")
    assert jaccard(signatures[0], signatures[1]) == first.jaccard(second)


def test_band_keys_give_the_candidates_that_minhashlsh_queries_give() -> None:
    sets = token_sets()
    params = MinHashParams(num_perm=128, seed=1, threshold=0.5)
    signatures = minhash_signatures(sets, params)
    b, r = params.bands
    buckets: dict[tuple[int, bytes], set[int]] = {}
    for i, keys in enumerate(minhash_band_keys(signatures, b, r)):
        assert len(keys) == b
        for band, key in enumerate(keys):
            buckets.setdefault((band, key), set()).add(i)
    lsh = MinHashLSH(threshold=0.5, num_perm=128)
    hashes = [MinHash(num_perm=128, seed=1, hashvalues=s, scheme="affine32") for s in signatures]
    for i, m in enumerate(hashes):
        lsh.insert(i, m)
    found_pairs = 0
    for i, m in enumerate(hashes):
        ours = set().union(
            *(buckets[(band, key)] for band, key in enumerate(minhash_band_keys(signatures[i : i + 1], b, r)[0]))
        )
        assert ours == set(lsh.query(m)), i
        found_pairs += len(ours) - 1
    assert found_pairs > 50  # families do collide: the comparison is not vacuous


def test_pairs_in_one_process_are_the_new_images_bucket_mates_and_a_hot_buckets_leader() -> None:
    # b=2 bands of r=1 value; the third and fourth values only tell the verified similarity apart.
    rows = {
        "a": [1, 10, 5, 5], "b": [1, 11, 5, 6], "c": [1, 12, 7, 7],  # band 0 bucket 1: b is new
        "d": [2, 13, 8, 8],  # new, alone
        "h0": [3, 20, 0, 0], "h1": [3, 21, 0, 1], "h2": [3, 22, 1, 1], "h3": [3, 23, 0, 0],  # band 0 bucket 3: hot
    }  # fmt: skip
    ids = np.array(list(rows), object)
    signatures = np.array(list(rows.values()), np.uint32)

    def found(new: set[str], cap: int = 3):
        return night_pairs(ids, signatures, np.isin(ids, list(new)), b=2, r=1, threshold=0.5, hot_bucket_size=cap)

    def pairs(found_) -> list[tuple]:
        return sorted((a, z, float(sim)) for a, z, sim in found_.pairs.itertuples(index=False))

    night = found({"b", "d", "h2"})
    assert pairs(night) == [("a", "b", 0.5)]  # b-c and h0-h2 agree in one value of four: below 0.5
    assert night.candidates == 3  # a-b, b-c and, in the hot bucket, h2 with its leader h0 only; a-c are both old
    assert [(r.band, r.size, r.leader) for r in night.hot.itertuples()] == [(0, 4, "h0")]
    assert found({"h2"}, cap=10).candidates == 3  # not hot: h2 with every member of its bucket
    leader = found({"h0"})  # a new leader meets every member of its hot bucket
    assert pairs(leader) == [("h0", "h1", 0.5), ("h0", "h3", 0.75)] and leader.candidates == 3
    nothing = found(set())
    assert (len(nothing.pairs), nothing.candidates, len(nothing.hot)) == (0, 0, 0)


def test_params_ids_change_with_any_parameter() -> None:
    base = MinHashParams()
    assert base.params_id == MinHashParams().params_id
    others = [MinHashParams(num_perm=64), MinHashParams(seed=2), MinHashParams(threshold=0.6)]
    assert len({base.params_id, *(p.params_id for p in others)}) == 4
    sim = SimHashParams(model="embedder:v2", dim=64)
    assert sim.params_id != SimHashParams(model="embedder:v3", dim=64).params_id
    assert sim.params_id.startswith("simhash-") and base.params_id.startswith("minhash-")


def test_simhash_keys_follow_the_angle_between_vectors() -> None:
    params = SimHashParams(model="m:v1", dim=32, bands=16, rows=8, seed=3)
    planes = hyperplanes(params)
    np.testing.assert_array_equal(planes, hyperplanes(params))  # the same on every executor
    rng = np.random.default_rng(0)
    v = rng.standard_normal(32)
    close = v + 0.1 * rng.standard_normal(32)
    far = rng.standard_normal(32)
    keys = simhash_band_keys(np.stack([v, close, far, 3 * v, -v]), planes, params.bands, params.rows)
    shared = [sum(a == b for a, b in zip(keys[0], other, strict=True)) for other in keys[1:]]
    assert shared[2] == 16  # scale does not change a sign
    assert shared[3] == 0  # the opposite vector flips every bit
    assert shared[0] > shared[1]
    assert all(len(k) == 1 for k in keys[0])


def jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def photo(seed: int) -> np.ndarray:
    """A smooth random 'photo': blurred noise with coloured blobs, 160x120."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((160, 120), Image.BICUBIC))


@pytest.mark.parametrize("kind", ["jpeg", "resize", "crop", "brightness", "rotate"])
def test_tokens_of_a_near_duplicate_overlap_far_more_than_those_of_another_image(kind: str) -> None:
    rng = np.random.default_rng(1)
    original = photo(0)
    zeros = np.zeros(original.shape[:2], np.uint8)
    copy = apply_transform(kind, rng, original, zeros, zeros, np.zeros((0, 2))).image
    tokens = [set(perceptual_tokens(x).tolist()) for x in (original, copy, photo(1))]

    def overlap(a: set, b: set) -> float:
        return len(a & b) / len(a | b)

    assert overlap(tokens[0], tokens[1]) > 0.6
    assert overlap(tokens[0], tokens[2]) < 0.4


def test_tokens_are_deterministic_and_refuse_an_unknown_recipe() -> None:
    np.testing.assert_array_equal(perceptual_tokens(photo(2)), perceptual_tokens(photo(2)))
    with pytest.raises(ValueError, match="unknown token recipe"):
        perceptual_tokens(photo(2), "v0")


def test_the_udf_core_keeps_every_row_in_order_with_errors_for_bad_ones() -> None:
    frame = pd.DataFrame(
        {
            "image_id": ["a", "b", "c", "d", "e"],
            "bytes": [jpeg(photo(3)), b"not an image", None, jpeg(photo(3), 60), jpeg(photo(4))],
            "error": [None, None, None, None, "truncated file"],
        }
    )
    params = MinHashParams(num_perm=64)
    out = minhash_frame(frame, params)
    assert out["image_id"].tolist() == ["a", "b", "c", "d", "e"]
    assert out["error"].isna().tolist() == [True, False, False, True, False]
    assert out["error"][1].startswith("undecodable image")
    assert out["error"][2] == "no image bytes"
    assert out["error"][4] == "truncated file"
    assert out["minhash"][1] is None and out["keys"][4] is None
    a, d = np.asarray(out["minhash"][0]), np.asarray(out["minhash"][3])
    assert a.shape == (64,) and jaccard(a, d) > 0.6  # a re-encoded copy
    assert len(out["keys"][0]) == params.bands[0]
    expected = minhash_signatures(
        [token_bytes(perceptual_tokens(np.asarray(Image.open(io.BytesIO(frame["bytes"][0])).convert("RGB"))))], params
    )
    np.testing.assert_array_equal(a, expected[0])
