"""jobs.index on small lakes: Spark candidates = datasketch's, hot buckets, components, top-k, incremental = full."""

from __future__ import annotations

import dataclasses
import json
import shutil
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import SCENE_ARGS
from datasketch import MinHash, MinHashLSH
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

import stages.index
from jobs.query import main as query_main
from lakelens.config import Config, ModelsConfig
from lakelens.graph import components_frame
from lakelens.lake import append, read_table
from lakelens.lsh import MinHashParams, NightBuckets, minhash_band_keys, minhash_signatures, screen_max_differ
from lakelens.lsh_pairs import night_pairs
from lakelens.lsh_spark import (
    Screen,
    matched_pairs,
    transform_bucket_rows,
    transform_candidates,
    transform_components,
    transform_jaccard,
    transform_leaders,
    transform_merged_groups,
    transform_new_pairs,
    transform_oversized,
    transform_top_k,
    transform_touched,
)
from lakelens.perceptual import token_bytes
from lakelens.scenes import generate_scenes
from lakelens.schemas import (
    DUP_GROUPS,
    EMBEDDINGS,
    HOT_BUCKETS,
    IMAGES,
    LSH_BUCKETS,
    NEAR_DUP_PAIRS,
    SIGNATURES,
    SIMILAR,
)
from models.registry import install_bundled
from stages.annotate import annotate, configured_manifest
from stages.index import index_near_duplicates, index_similar, similar_params
from stages.ingest import ingest


def rows(df: DataFrame, *order: str) -> list[tuple]:
    return [tuple(r) for r in df.orderBy(*order).collect()]


def test_spark_candidates_are_minhashlshs_candidates(spark) -> None:
    rng = np.random.default_rng(5)
    sets = []
    for _ in range(30):
        base = rng.choice(50_000, 60, replace=False)
        for _ in range(3):
            sets.append(
                token_bytes(np.unique(np.concatenate([base[rng.random(60) > 0.3], rng.integers(0, 50_000, 8)])))
            )
    params = MinHashParams(num_perm=128, threshold=0.5)
    signatures = minhash_signatures(sets, params)
    keys = minhash_band_keys(signatures, *params.bands)
    ids = [f"img{i:03d}" for i in range(len(sets))]
    signed = spark.createDataFrame(list(zip(ids, keys, strict=True)), "image_id string, keys array<binary>")
    buckets = transform_bucket_rows(signed, "minhash", params.params_id)
    found = transform_candidates(buckets, None, hot_bucket_size=10_000)
    ours = {(r.image_id_a, r.image_id_b) for r in found.pairs.collect()}

    lsh = MinHashLSH(threshold=0.5, num_perm=128)
    hashes = [MinHash(num_perm=128, seed=1, hashvalues=s, scheme="affine32") for s in signatures]
    for name, m in zip(ids, hashes, strict=True):
        lsh.insert(name, m)
    theirs = {tuple(sorted((name, other))) for name, m in zip(ids, hashes, strict=True) for other in lsh.query(m)}
    theirs = {p for p in theirs if p[0] != p[1]}
    assert len(theirs) > 30
    assert ours == theirs
    assert found.hot.count() == 0


def test_a_hot_bucket_is_linked_to_its_leader_and_reported(spark) -> None:
    # 12 images share every band key (a blank frame); two others share one key.
    same = [bytes([7]) * 4, bytes([8]) * 4]
    data = [(f"blank{i:02d}", same) for i in range(12)] + [("x1", [b"a", b"q"]), ("x2", [b"a", b"r"])]
    signed = spark.createDataFrame(data, "image_id string, keys array<binary>")
    buckets = transform_bucket_rows(signed, "minhash", "p")
    found = transform_candidates(buckets, None, hot_bucket_size=5)
    expected = [("blank00", f"blank{i:02d}") for i in range(1, 12)] + [("x1", "x2")]
    assert rows(found.pairs, "image_id_a", "image_id_b") == expected
    assert rows(found.hot, "band") == [(0, same[0], 12, "blank00"), (1, same[1], 12, "blank00")]


def test_incremental_candidates_pair_new_images_with_old_and_new_only(spark) -> None:
    data = [("a", [b"k"]), ("b", [b"k"]), ("c", [b"k"]), ("d", [b"z"])]
    signed = spark.createDataFrame(data, "image_id string, keys array<binary>")
    everything = transform_bucket_rows(signed, "minhash", "p")
    new = everything.where(F.col("image_id") == "c")
    found = transform_candidates(new, everything.where(F.col("image_id") != "c"), hot_bucket_size=100)
    assert rows(found.pairs, "image_id_a") == [("a", "c"), ("b", "c")]


def test_pairing_against_a_broadcast_of_the_night_equals_the_self_join_and_its_verification(spark) -> None:
    rng = np.random.default_rng(3)
    sets = []
    for _ in range(25):  # families of related sets: pairs from identical to unrelated
        base = rng.choice(50_000, 60, replace=False)
        sets += [token_bytes(np.unique(np.concatenate([base[rng.random(60) > rng.uniform(0, 0.6)],
                                                       rng.integers(0, 50_000, 8)]))) for _ in range(4)]  # fmt: skip
    sets += [[b"blank"]] * 8  # eight identical images: every bucket of theirs is hot at a cap of 5
    params = MinHashParams(num_perm=64, threshold=0.4)
    signatures = minhash_signatures(sets, params)
    keys = minhash_band_keys(signatures, *params.bands)
    ids = [f"img{i:03d}" for i in rng.permutation(len(sets))]  # old and new ids interleave in order
    new_ids = set(ids[60:100]) | set(ids[-4:])  # half the blanks are new
    table = spark.createDataFrame(
        [(i, [int(v) for v in s], k) for i, s, k in zip(ids, signatures, keys, strict=True)],
        "image_id string, minhash array<long>, keys array<binary>",
    )
    is_new = F.col("image_id").isin(*new_ids)
    buckets = transform_bucket_rows(table, "minhash", params.params_id)
    new, old = buckets.where(is_new), buckets.where(~is_new)
    found = transform_candidates(new, old, hot_bucket_size=5)
    expected = rows(transform_jaccard(found.pairs, table, 0.5), "image_id_a", "image_id_b")
    assert 15 < len(expected) < found.pairs.count()

    columns = ["image_id", "band", "key"]
    members = new.select(*columns).unionByName(transform_touched(new, old).select(*columns))
    hot = transform_leaders(members, transform_oversized(members, 5)).collect()
    assert sorted(tuple(r) for r in hot) == sorted(tuple(r) for r in found.hot.collect())
    assert len(hot) == params.bands[0]
    mine = [(i, s, k) for i, s, k in zip(ids, signatures, keys, strict=True) if i in new_ids]
    leaders = {(r["band"], bytes(r["key"])): r["leader"] for r in hot}
    night = NightBuckets.build([m[0] for m in mine], np.stack([m[1] for m in mine]), [m[2] for m in mine], leaders)
    scored = transform_new_pairs(members, table, spark.sparkContext.broadcast(night), 0.5)
    assert rows(matched_pairs(scored), "image_id_a", "image_id_b") == expected
    assert scored.agg(F.sum("candidates")).first()[0] == found.pairs.count()

    # In one process, from the signatures alone (jobs.index's path for a small lake): the same pairs and hot buckets.
    in_driver = night_pairs(np.array(ids, object), signatures, np.isin(ids, list(new_ids)), *params.bands, 0.5, 5)
    assert sorted(map(tuple, in_driver.pairs.itertuples(index=False))) == expected
    assert in_driver.candidates == found.pairs.count()
    assert sorted(map(tuple, in_driver.hot.itertuples(index=False))) == sorted(tuple(r) for r in hot)


def screened_candidates(table: DataFrame, params: MinHashParams, threshold: float) -> DataFrame:
    screen = Screen.at(params.num_perm, threshold)
    return transform_candidates(screen.bucket_rows(table, params.params_id), None, 1000, screen=screen).pairs


def signature_table(spark, ids: list[str], signatures: np.ndarray, params: MinHashParams) -> DataFrame:
    keys = minhash_band_keys(signatures, *params.bands)
    return spark.createDataFrame(
        [(i, [int(v) for v in s], k) for i, s, k in zip(ids, signatures, keys, strict=True)],
        "image_id string, minhash array<long>, keys array<binary>",
    )


def test_the_bit_screen_drops_candidates_but_no_pair_that_verification_keeps(spark) -> None:
    rng = np.random.default_rng(11)
    params = MinHashParams(num_perm=128, threshold=0.5)
    b, r = params.bands
    signatures, ids = [], []
    for n in range(40):
        base = rng.integers(0, 2**32 - 1, 128, dtype=np.uint32)
        near = np.where(rng.random(128) < 0.2, rng.integers(0, 2**32 - 1, 128, dtype=np.uint32), base)
        chance = rng.integers(0, 2**32 - 1, 128, dtype=np.uint32)  # unrelated, sharing one band by chance
        band = n % b
        chance[band * r : (band + 1) * r] = base[band * r : (band + 1) * r]
        signatures += [base, near, chance]
        ids += [f"base{n:02d}", f"near{n:02d}", f"chance{n:02d}"]
    table = signature_table(spark, ids, np.stack(signatures), params)
    candidates = transform_candidates(transform_bucket_rows(table, "minhash", params.params_id), None, 1000).pairs
    screened = screened_candidates(table, params, 0.6)
    expected = rows(transform_jaccard(candidates, table, 0.6), "image_id_a", "image_id_b")
    assert rows(transform_jaccard(screened, table, 0.6), "image_id_a", "image_id_b") == expected
    assert len(expected) >= 35
    assert screened.count() < candidates.count() * 0.6
    assert set(rows(screened, "image_id_a")) <= set(rows(candidates, "image_id_a"))


@pytest.mark.parametrize("num_perm", [128, 100])
def test_the_bit_screen_keeps_a_pair_at_the_threshold_whose_other_hash_values_all_differ_in_their_low_bit(
    spark, num_perm: int
) -> None:
    # Worst case for the screen: every unequal hash value differs in its low bit too. Band 0 stays equal, so every
    # copy is a candidate of the original.
    params = MinHashParams(num_perm=num_perm, threshold=0.5)
    b, r = params.bands
    original = np.random.default_rng(2).integers(0, 2**32 - 1, num_perm, dtype=np.uint32)
    flipped = {}
    for changed in range(num_perm // 2 - 2, num_perm // 2 + 3):
        copy = original.copy()
        copy[num_perm - changed :] ^= 1
        flipped[f"copy{changed:03d}"] = copy
    table = signature_table(spark, ["base", *flipped], np.stack([original, *flipped.values()]), params)
    screened = screened_candidates(table, params, 0.5)
    similarity = {i: float(np.float32(np.mean(s == original))) for i, s in flipped.items()}
    expected = {("base", i, sim) for i, sim in similarity.items() if sim >= 0.5}
    assert {p for p in rows(transform_jaccard(screened, table, 0.5), "image_id_b") if p[0] == "base"} == expected
    # every copy within the screen's slack comes out of the join; the next one does not
    kept = {p[1] for p in rows(screened, "image_id_a") if p[0] == "base"}
    assert kept == {i for i in flipped if int(i[4:]) <= screen_max_differ(num_perm, 0.5)}


@pytest.mark.parametrize("components", ["spark", "one process"])
def test_components_join_chains_and_keep_groups_apart(spark, components) -> None:
    links = [("a", "b"), ("b", "c"), ("c", "d"), ("e", "f"), ("x", "y"), ("w", "x")]
    pairs = spark.createDataFrame(links, "image_id_a string, image_id_b string")
    if components == "spark":
        groups = transform_components(pairs)
    else:
        groups = spark.createDataFrame(components_frame(pd.DataFrame(links, columns=["image_id_a", "image_id_b"])))
    assert rows(groups, "image_id") == [
        ("a", "a", 4), ("b", "a", 4), ("c", "a", 4), ("d", "a", 4), ("e", "e", 2), ("f", "e", 2),
        ("w", "w", 3), ("x", "w", 3), ("y", "w", 3),
    ]  # fmt: skip


def merged_in_the_driver(before: DataFrame, new_pairs: DataFrame) -> DataFrame:
    """stages.index.merge_groups' path for a night's few pairs; None (no group merged) leaves the groups as they
    were."""
    merged = stages.index.merged_in_the_driver(before, new_pairs)
    return before if merged is None else merged


@pytest.mark.parametrize("merge", [transform_merged_groups, merged_in_the_driver])
def test_merging_new_pairs_into_groups_equals_the_components_of_all_pairs(spark, merge) -> None:
    schema = "image_id_a string, image_id_b string"
    old = [("b", "c"), ("c", "d"), ("f", "g"), ("m", "n"), ("p", "q")]
    new = [
        ("a", "d"),  # a new image joins a group and becomes its smallest id
        ("d", "f"),  # two old groups merge
        ("h", "n"), ("h", "z"),  # a new image links an old group and another new image
        ("x", "y"),  # a new group of new images
        ("b", "d"),  # a pair inside one old group
    ]  # fmt: skip
    before = transform_components(spark.createDataFrame(old, schema))
    merged = merge(before, spark.createDataFrame(new, schema))
    assert rows(merged, "image_id") == rows(transform_components(spark.createDataFrame(old + new, schema)), "image_id")
    assert ("p", "p", 2) in rows(merged, "image_id")  # untouched
    nothing_new = merge(before, spark.createDataFrame([("q", "p")], schema))
    assert rows(nothing_new, "image_id") == rows(before, "image_id")


def test_top_k_ranks_by_cosine_then_id(spark) -> None:
    scored = spark.createDataFrame(
        [("a", "b", 0.5), ("a", "c", 0.9), ("a", "d", 0.5), ("a", "e", 0.1), ("b", "a", 0.5)],
        "image_id string, neighbor_id string, cosine float",
    )
    assert rows(transform_top_k(scored, 3), "image_id", "rank") == [
        ("a", "c", 1, 0.8999999761581421), ("a", "b", 2, 0.5), ("a", "d", 3, 0.5), ("b", "a", 1, 0.5),
    ]  # fmt: skip


def embedding_rows(spark, ids: list[str], vectors: np.ndarray, model: str, version: str) -> tuple[DataFrame, DataFrame]:
    """``images`` rows (no bytes: the index of similar images reads only ids) and ``embeddings`` rows of ``vectors``;
    a None vector is an image the embedder could not read."""
    now, today = datetime(2026, 11, 24), date(2026, 11, 24)
    images = [(i, f"mem:{i}", None, None, None, None, None, None, None, None, None, today) for i in ids]
    embedded = [
        (i, None if v is None else [float(x) for x in v], None if v is not None else "unreadable", now, model, version)
        for i, v in zip(ids, vectors, strict=True)
    ]  # fmt: skip
    return spark.createDataFrame(images, IMAGES.schema), spark.createDataFrame(embedded, EMBEDDINGS.schema)


def brute_force_top_k(ids: list[str], vectors: np.ndarray, k: int) -> list[tuple]:
    """Every image's k best by cosine (float64, as the index computes it), ties by neighbour id."""
    cos = (vectors.astype(np.float64) @ vectors.astype(np.float64).T).astype(np.float32)
    out = []
    for i, image_id in enumerate(ids):
        ranked = sorted((-cos[i, j], n) for j, n in enumerate(ids) if j != i)[:k]
        out += [(image_id, n, rank, float(-c)) for rank, (c, n) in enumerate(ranked, 1)]
    return sorted(out)


@pytest.mark.parametrize(
    ("method", "driver_scores"),
    [("exact", stages.index.DRIVER_SCORES), ("exact", 0), ("lsh", stages.index.DRIVER_SCORES)],
)
def test_similar_lists_incremental_equal_full_and_exact_equals_brute_force(
    spark, cfg: Config, tmp_path: Path, method: str, driver_scores: int, monkeypatch
) -> None:
    monkeypatch.setattr(stages.index, "DRIVER_SCORES", driver_scores)  # 0: every exact run takes the Spark path
    similar = dataclasses.replace(cfg.index.similar, method=method, k=5, block=16, bands=32, rows=4)
    lake = dataclasses.replace(
        cfg, models=ModelsConfig(str(tmp_path / "models")), index=dataclasses.replace(cfg.index, similar=similar)
    )
    install_bundled(lake.models.registry)
    manifest = configured_manifest(lake, "embed")
    rng = np.random.default_rng(5)
    centres = rng.standard_normal((6, int(manifest.arch_args["dim"])))
    vectors = centres[rng.integers(0, 6, 70)] + 0.6 * rng.standard_normal((70, centres.shape[1]))
    vectors[41] = vectors[40] = vectors[3]  # equal cosines: ranked by neighbour id
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    ids = [f"img{i:03d}" for i in range(70)]
    images, embedded = embedding_rows(spark, ids, list(vectors[:69]) + [None], manifest.name, manifest.version)
    first, rest = F.col("image_id") < "img004", F.col("image_id") < "img030"  # first: lists shorter than k
    for night in (first, rest & ~first, ~rest):
        append(images.where(night), lake, IMAGES)
        append(embedded.where(night), lake, EMBEDDINGS)
        index_similar(spark, lake)
    incremental = rows(read_table(spark, lake, SIMILAR), "image_id", "rank")
    again = index_similar(spark, lake)
    assert (again.embedded, again.missing, again.indexed, again.updated_images) == (69, 1, 0, 0)
    assert rows(read_table(spark, lake, SIMILAR), "image_id", "rank") == incremental
    rebuilt = index_similar(spark, lake, full=True)
    assert (rebuilt.indexed, rebuilt.updated_images) == (69, 69)
    assert rows(read_table(spark, lake, SIMILAR), "image_id", "rank") == incremental
    top = brute_force_top_k(ids[:69], vectors[:69], 5)
    found = [(i, n, r, c) for i, n, r, c, _, _ in incremental]
    if method == "exact":
        assert sorted(found) == top
    else:
        assert len({(i, n) for i, n, *_ in found} & {(i, n) for i, n, *_ in top}) >= 0.9 * len(top)


@pytest.fixture
def scene_sources(tmp_path: Path) -> tuple[Path, Path]:
    """Two folders of synthetic scenes with planted near-duplicates (a nightly increment each), one corrupt file."""
    folder = tmp_path / "scenes"
    generate_scenes(folder, n=60, seed=31, workers=1, dup_fraction=0.3)
    files = sorted((folder / "images").iterdir())
    first, second = tmp_path / "night1", tmp_path / "night2"
    for target, part in ((first, files[:35]), (second, files[35:])):
        target.mkdir()
        for path in part:
            shutil.copy(path, target / path.name)
    (second / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    return first, second


def index_tables(spark, cfg: Config) -> dict[str, list[tuple]]:
    return {
        "pairs": rows(read_table(spark, cfg, NEAR_DUP_PAIRS), "image_id_a", "image_id_b"),
        "groups": rows(read_table(spark, cfg, DUP_GROUPS), "image_id"),
        "similar": rows(read_table(spark, cfg, SIMILAR), "image_id", "rank"),
        "signatures": rows(read_table(spark, cfg, SIGNATURES).drop("indexed_at"), "image_id"),
        "buckets": rows(read_table(spark, cfg, LSH_BUCKETS).where(F.col("kind") == "minhash"), "image_id", "band"),
    }


def executor_lost(*args: object) -> None:
    raise RuntimeError("executor lost")


@pytest.mark.slow
@pytest.mark.parametrize("pairing", ["in the driver", "against a broadcast of the night"])
def test_incremental_runs_equal_a_full_rebuild_and_a_rerun_changes_nothing_and_queries_agree(
    spark,
    cfg: Config,
    tmp_path: Path,
    scene_sources: tuple[Path, Path],
    capsys,
    monkeypatch: pytest.MonkeyPatch,
    pairing: str,
) -> None:
    if pairing != "in the driver":
        monkeypatch.setattr(stages.index, "DRIVER_HASHES", 0)  # a lake too large to pair in the driver
    lake = dataclasses.replace(cfg, models=ModelsConfig(str(tmp_path / "models")))
    install_bundled(lake.models.registry)
    first, second = scene_sources
    ingest(spark, lake, str(first))
    annotate(spark, lake, ["embed"])
    night1 = index_near_duplicates(spark, lake)
    assert (night1.images, night1.hashed, night1.errors) == (35, 35, 0)
    index_similar(spark, lake)

    ingest(spark, lake, str(second))
    annotate(spark, lake, ["embed"])
    # A run killed after it stored its bucket rows, before its signatures: the next one redoes those images and
    # stores their buckets once (the comparisons with a full rebuild below hold every bucket row).
    write = stages.index._write

    def killed_at_signatures(df: DataFrame, cfg: Config, spec, full: bool, **partition: str) -> None:
        if spec is SIGNATURES:
            raise RuntimeError("killed")
        write(df, cfg, spec, full, **partition)

    with monkeypatch.context() as patched:
        patched.setattr(stages.index, "_write", killed_at_signatures)
        with pytest.raises(RuntimeError, match="killed"):
            index_near_duplicates(spark, lake)
    night2 = index_near_duplicates(spark, lake)
    assert (night2.images, night2.hashed, night2.errors) == (61, 26, 1)
    similar2 = index_similar(spark, lake)
    assert (similar2.embedded, similar2.missing, similar2.indexed) == (60, 1, 25)
    incremental = index_tables(spark, lake)
    assert incremental["pairs"] and incremental["groups"] and incremental["similar"]
    assert sum(1 for r in incremental["signatures"] if r[3] is not None) == 1  # the corrupt file, counted

    again = index_near_duplicates(spark, lake)
    assert (again.hashed, again.pairs_added) == (0, 0)
    assert index_similar(spark, lake).indexed == 0
    assert index_tables(spark, lake) == incremental

    # A rebuild that fails part-way leaves the tables as they were: its partitions are swapped in at the end.
    for name in ("transform_jaccard", "transform_new_pairs", "transform_cosine", "transform_exact_candidates",
                 "update_lists", "night_pairs"):  # fmt: skip
        monkeypatch.setattr(stages.index, name, executor_lost)
    with pytest.raises(RuntimeError, match="executor lost"):
        index_near_duplicates(spark, lake, full=True)
    with pytest.raises(RuntimeError, match="executor lost"):
        index_similar(spark, lake, full=True)
    monkeypatch.undo()
    assert index_tables(spark, lake) == incremental

    index_near_duplicates(spark, lake, full=True)
    index_similar(spark, lake, full=True)
    assert index_tables(spark, lake) == incremental
    assert read_table(spark, lake, HOT_BUCKETS).count() == 0
    with monkeypatch.context() as patched:  # too many new signatures to broadcast: the self-join and joined verify
        patched.setattr(stages.index, "DRIVER_HASHES", 0)
        patched.setattr(stages.index, "BROADCAST_HASHES", 0)
        index_near_duplicates(spark, lake, full=True)
    assert index_tables(spark, lake) == incremental
    check_queries(spark, lake, capsys)
    by_buckets = dataclasses.replace(lake.index.similar, method="lsh")
    lsh = dataclasses.replace(lake, index=dataclasses.replace(lake.index, similar=by_buckets))
    assert index_similar(spark, lsh).indexed == 60
    check_queries(spark, lsh, capsys)


def query(capsys, cfg: Config, *args: str) -> list[dict]:
    capsys.readouterr()
    assert query_main(["--lake", cfg.lake.root, "--set", f"lake.database={cfg.lake.database}", *SCENE_ARGS,
                       "--set", f"models.registry={cfg.models.registry}",
                       "--set", f"index.similar.method={cfg.index.similar.method}", *args]) == 0  # fmt: skip
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def check_queries(spark, lake: Config, capsys) -> None:
    """Query by id answers from the index's tables; query by the same file finds the same images through buckets."""
    pair = read_table(spark, lake, NEAR_DUP_PAIRS).orderBy("image_id_a", "image_id_b").first()
    image_id = pair.image_id_a
    pairs = read_table(spark, lake, NEAR_DUP_PAIRS)
    mine = pairs.where((F.col("image_id_a") == image_id) | (F.col("image_id_b") == image_id)).collect()
    near = {r.image_id_b if r.image_id_a == image_id else r.image_id_a: r.similarity for r in mine}
    scheme = F.col("params_id") == similar_params(lake, configured_manifest(lake, "embed")).params_id
    lists = read_table(spark, lake, SIMILAR).where(scheme & (F.col("image_id") == image_id)).orderBy("rank").limit(4)
    top = [(r.neighbor_id, r.cosine) for r in lists.collect()]
    by_id = query(capsys, lake, "--id", image_id, "--k", "4")
    assert {r["image_id"]: r["score"] for r in by_id if r["relation"] == "near_duplicate"} == {
        k: round(v, 4) for k, v in near.items()
    }
    assert [(r["image_id"], r["score"]) for r in by_id if r["relation"] == "similar"] == [
        (n, round(c, 4)) for n, c in top
    ]
    assert all(r["uri"].startswith("file:") for r in by_id)

    uri = read_table(spark, lake, IMAGES).where(F.col("image_id") == image_id).first().uri
    by_file = query(capsys, lake, "--image", uri.removeprefix("file:"), "--k", "4")
    assert [r for r in by_file if r["relation"] == "near_duplicate"] == [
        r for r in by_id if r["relation"] == "near_duplicate"
    ]
    similar = [r for r in by_file if r["relation"] == "similar"]
    assert [r["image_id"] for r in similar] == [n for n, _ in top]
    assert [r["score"] for r in similar] == pytest.approx([c for _, c in top], abs=2e-4)
    assert by_file[0] == {"image_id": image_id, "uri": uri, "relation": "identical", "score": 1.0}  # its own bytes
    assert sum(r["relation"] == "identical" for r in by_file) == 1

    capsys.readouterr()
    assert query_main(["--lake", lake.lake.root, "--set", f"lake.database={lake.lake.database}", "--id", "f" * 64]) == 1
    assert "no image with id" in capsys.readouterr().err
