"""LSH in Spark: band rows, candidate pairs by a distributed self-join with hot buckets capped, exact
verification, connected components and top-k lists. Pure DataFrame transforms; nothing is collected to the driver
(:func:`transform_new_pairs` takes a broadcast whose size its caller bounds).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pandas as pd
from pyspark import Broadcast
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from lakelens.lsh import NightBuckets, screen_max_differ
from lakelens.pyworker import worker_task

_BUCKET = ["band", "key"]


def transform_bucket_rows(signed: DataFrame, kind: str, params_id: str, keep: Sequence[str] = ()) -> DataFrame:
    """(image_id, keys) -> lsh_buckets rows (image_id, band, key, kind, params_id) and the ``keep`` columns of each
    row's image; rows without keys drop out."""
    return (
        signed.where(F.col("keys").isNotNull())
        .select("image_id", *keep, F.posexplode("keys").alias("band", "key"))
        .select("image_id", F.col("band").cast("int"), "key", *keep)
        .withColumns({"kind": F.lit(kind), "params_id": F.lit(params_id)})
    )


@dataclass(frozen=True)
class Candidates:
    """Candidate pairs (image_id_a < image_id_b, distinct) and the buckets that were too large to pair whole
    (band, key, size, leader)."""

    pairs: DataFrame
    hot: DataFrame


@dataclass(frozen=True)
class Screen:
    """A lossless pre-filter of MinHash candidates inside the bucket join: bucket rows carry the low bit of each of
    their image's hash values (:meth:`words`, column ``screen``), and a pair differing in more than ``max_differ``
    of them (:func:`lakelens.lsh.screen_max_differ`) is dropped before it is ever a row. Unrelated images that
    share a bucket by chance agree in about half of those bits: nearly all such pairs go, and pairs, not
    signatures, are what a large build spends its time shuffling."""

    num_perm: int
    max_differ: int

    @classmethod
    def at(cls, num_perm: int, threshold: float) -> Screen:
        """The screen of signatures of ``num_perm`` hash values verified at ``threshold``."""
        return cls(num_perm, screen_max_differ(num_perm, threshold))

    def words(self, minhash: str = "minhash") -> Column:
        """Column ``screen``: the low bit of each hash value of ``minhash``, 64 to a long (array<long>)."""
        words = [
            F.aggregate(
                F.slice(minhash, 64 * i + 1, 64),
                F.lit(0).cast("long"),
                lambda acc, value: F.shiftleft(acc, 1).bitwiseOR(value.bitwiseAND(F.lit(1))),
            )
            for i in range(self._count)
        ]
        return F.array(*words).alias("screen")

    def bucket_rows(self, signed: DataFrame, params_id: str) -> DataFrame:
        """:func:`transform_bucket_rows` of (image_id, minhash, keys), each row with its image's ``screen``."""
        return transform_bucket_rows(signed.select("image_id", "keys", self.words()), "minhash", params_id, ["screen"])

    def keeps(self) -> Column:
        differ = [F.bit_count(F.col("a.screen")[i].bitwiseXOR(F.col("b.screen")[i])) for i in range(self._count)]
        return functools.reduce(operator.add, differ) <= self.max_differ

    @property
    def _count(self) -> int:
        return -(-self.num_perm // 64)


def transform_candidates(
    new: DataFrame, old: DataFrame | None, hot_bucket_size: int, screen: Screen | None = None
) -> Candidates:
    """Candidate pairs with at least one image of ``new``, from the buckets ``new`` touches.

    Args:
        new: bucket rows (image_id, band, key) of the images this run adds (all of them for a full build).
        old: bucket rows of the images indexed before (same kind and params, none of ``new``); None for a full build.
        hot_bucket_size: a bucket with more images pairs each with the bucket's smallest image_id (its leader)
            only, so that thousands of identical images (a blank frame) cost n pairs, not n^2 / 2.
        screen: when given, both ``new`` and ``old`` carry a ``screen`` column and only the candidates it keeps
            come out (a subset that holds every pair verification would keep).
    """

    # Buckets are found by a 64-bit hash of (band, key): Spark sorts and joins on a long far faster than on binary
    # keys (5x here). Pairs are then kept only where band and key are equal too, so a hash collision (odds about
    # n^2 / 2^65 for n bucket rows) adds no pair; at worst two buckets count as one against the cap.
    carried = ["screen"] if screen else []

    def hashed(rows: DataFrame) -> DataFrame:
        return rows.select("image_id", *_BUCKET, *carried, F.xxhash64(*_BUCKET).alias("bucket"))

    members = hashed(new).withColumn("is_new", F.lit(True))
    if old is not None:
        touched = members.select("bucket").distinct()
        before = hashed(old).join(touched, "bucket", "left_semi")
        members = members.unionByName(before.withColumn("is_new", F.lit(False)))
    # One shuffle by bucket: sizes and leaders by window, and the self-join below reuses its partitioning. In a hot
    # bucket only the leader stands on the left side, so its members pair with the leader alone, in the same join.
    bucket = Window.partitionBy("bucket")
    tagged = members.withColumns({"size": F.count("*").over(bucket), "leader": F.min("image_id").over(bucket)})
    shared = tagged.where(F.col("size") > 1)
    hot_size = F.col("size") > hot_bucket_size
    left = shared.where(~hot_size | (F.col("image_id") == F.col("leader"))).alias("a")
    right = shared.where(~hot_size | (F.col("image_id") != F.col("leader"))).alias("b")
    same = (
        (F.col("a.image_id") < F.col("b.image_id"))
        & (F.col("a.is_new") | F.col("b.is_new"))
        & (F.col("a.band") == F.col("b.band"))
        & (F.col("a.key") == F.col("b.key"))
    )
    paired = left.join(right, "bucket").where(same & screen.keeps() if screen else same)
    pairs = paired.select(F.col("a.image_id").alias("image_id_a"), F.col("b.image_id").alias("image_id_b"))
    hot = tagged.where(hot_size)
    return Candidates(
        pairs=pairs.distinct(),
        hot=hot.select(*_BUCKET, "size", "leader").distinct(),
    )


def _join_both(pairs: DataFrame, rows: DataFrame, column: str) -> DataFrame:
    """``pairs`` with ``column`` of image_id_a as ``<column>_a`` and of image_id_b as ``<column>_b``."""
    for side in ("a", "b"):
        side_rows = rows.select(F.col("image_id").alias(f"image_id_{side}"), F.col(column).alias(f"{column}_{side}"))
        pairs = pairs.join(side_rows, f"image_id_{side}")
    return pairs


def _dot(a: str, b: str) -> Column:
    return F.aggregate(F.zip_with(a, b, lambda x, y: x * y), F.lit(0.0).cast("double"), lambda acc, v: acc + v)


def transform_jaccard(pairs: DataFrame, signatures: DataFrame, threshold: float) -> DataFrame:
    """Pairs whose MinHash signatures agree in at least ``threshold`` of their positions (datasketch's Jaccard
    estimate), with that ``similarity``."""
    joined = _join_both(pairs, signatures.where(F.col("minhash").isNotNull()), "minhash")
    equal = F.size(F.filter(F.zip_with("minhash_a", "minhash_b", lambda x, y: x == y), lambda same: same))
    scored = joined.select("image_id_a", "image_id_b", (equal / F.size("minhash_a")).cast("float").alias("similarity"))
    return scored.where(F.col("similarity") >= threshold)


def transform_touched(new: DataFrame, old: DataFrame) -> DataFrame:
    """The bucket rows of ``old`` in a bucket that a row of ``new`` (a run's new images, a bounded few) is in:
    the new keys are broadcast, so the old rows are filtered where they are read, never shuffled."""
    return old.join(F.broadcast(new.select(*_BUCKET).distinct()), _BUCKET, "left_semi")


def transform_oversized(members: DataFrame, hot_bucket_size: int) -> DataFrame:
    """(band, key, size) of the buckets of ``members`` holding more images than the cap: sizes alone, counted
    over every row by a hash aggregate (a leader, a string minimum, is aggregated by sorting the rows)."""
    sizes = members.groupBy(*_BUCKET).agg(F.count("*").alias("size"))
    return sizes.where(F.col("size") > hot_bucket_size)


def transform_leaders(members: DataFrame, hot: DataFrame) -> DataFrame:
    """(band, key, size, leader) of the buckets ``hot`` (a few band, key rows) from the rows of ``members``."""
    rows = members.join(F.broadcast(hot.select(*_BUCKET)), _BUCKET, "left_semi")
    return rows.groupBy(*_BUCKET).agg(F.count("*").alias("size"), F.min("image_id").alias("leader"))


def transform_new_pairs(members: DataFrame, signatures: DataFrame, night: Broadcast, threshold: float) -> DataFrame:
    """The candidate pairs of a run's new images, verified: for each image of ``members`` (the bucket rows of the
    new images and of the old ones in the buckets they touch), how many candidates it has among the new images
    (``night``, a broadcast :class:`~lakelens.lsh.NightBuckets`) and those whose estimated Jaccard is at least
    ``threshold``: (image_id, candidates, matches array<(partner, similarity)>).

    The same pairs as :func:`transform_candidates` and :func:`transform_jaccard`, but each image's signature
    travels once, with its buckets, and numpy compares it with its partners' in the broadcast: no pair is shuffled.
    """
    keyed = members.groupBy("image_id").agg(F.collect_list(F.struct(*_BUCKET)).alias("buckets"))
    rows = keyed.join(signatures.where(F.col("minhash").isNotNull()), "image_id")

    def verify(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        found: NightBuckets = night.value
        for frame in frames:
            columns = zip(frame["image_id"], frame["minhash"], frame["buckets"], strict=True)
            results = [
                found.verify(image_id, minhash, [(b["band"], bytes(b["key"])) for b in buckets], threshold)
                for image_id, minhash, buckets in columns
            ]
            yield pd.DataFrame(
                {
                    "image_id": frame["image_id"].to_numpy(),
                    "candidates": [n for n, _ in results],
                    "matches": [[{"partner": p, "similarity": s} for p, s in kept] for _, kept in results],
                }
            )

    schema = "image_id string, candidates int, matches array<struct<partner: string, similarity: float>>"
    return rows.select("image_id", "minhash", "buckets").mapInPandas(worker_task(verify), schema)


def matched_pairs(scored: DataFrame) -> DataFrame:
    """:func:`transform_new_pairs`'s matches as pairs (image_id_a < image_id_b, similarity)."""
    matched = scored.select("image_id", F.explode("matches").alias("m"))
    return matched.select(
        F.least("image_id", "m.partner").alias("image_id_a"),
        F.greatest("image_id", "m.partner").alias("image_id_b"),
        F.col("m.similarity").alias("similarity"),
    )


def transform_cosine(pairs: DataFrame, vectors: DataFrame) -> DataFrame:
    """Pairs with the exact cosine of their (unit) embedding vectors."""
    joined = _join_both(pairs, vectors, "vector")
    return joined.select("image_id_a", "image_id_b", _dot("vector_a", "vector_b").cast("float").alias("cosine"))


def transform_top_k(scored: DataFrame, k: int) -> DataFrame:
    """(image_id, neighbor_id, cosine) -> the ``k`` best per image with ``rank`` 1..k (ties: smaller id first)."""
    order = Window.partitionBy("image_id").orderBy(F.col("cosine").desc(), F.col("neighbor_id"))
    ranked = scored.withColumn("rank", F.row_number().over(order))
    return ranked.where(F.col("rank") <= k).select("image_id", "neighbor_id", F.col("rank").cast("int"), "cosine")


def both_directions(pairs: DataFrame, score: str) -> DataFrame:
    """Symmetric pairs (a, b, score) as rows (image_id, neighbor_id, score) for both a and b."""
    forward = pairs.select(F.col("image_id_a").alias("image_id"), F.col("image_id_b").alias("neighbor_id"), score)
    backward = pairs.select(F.col("image_id_b").alias("image_id"), F.col("image_id_a").alias("neighbor_id"), score)
    return forward.unionByName(backward)


def transform_merged_groups(groups: DataFrame, new_pairs: DataFrame) -> DataFrame:
    """The groups (image_id, group_id, group_size) of a pair graph after ``new_pairs`` join it, from its groups
    before (the components of the old pairs, as :func:`transform_components` gives them): the components of all
    pairs, computed only over the groups the new pairs touch.

    Each image of a new pair stands for its group (by its group_id, itself where it has none); the components of
    those stand-ins merge groups, and the smallest group_id of a merge is the smallest image_id in it. Images no new
    pair reaches keep their rows; an image first met in a pair joins as a group of its own before merging. For
    runs with too many new pairs for :func:`lakelens.graph.group_moves` in the driver.
    """

    def stand_in(side: str) -> DataFrame:
        return groups.select(F.col("image_id").alias(side), F.col("group_id").alias(f"group_{side}"))

    links = (
        new_pairs.select("image_id_a", "image_id_b")
        .join(stand_in("image_id_a"), "image_id_a", "left")
        .join(stand_in("image_id_b"), "image_id_b", "left")
        .select(
            F.coalesce("group_image_id_a", "image_id_a").alias("image_id_a"),
            F.coalesce("group_image_id_b", "image_id_b").alias("image_id_b"),
        )
        .where(F.col("image_id_a") != F.col("image_id_b"))
    )
    moves = transform_components(links).select(F.col("image_id").alias("stand_in"), F.col("group_id").alias("into"))
    # Every member under its stand-in: old groups by group_id, and the stand-ins that had no group (themselves).
    members = (
        groups.select("image_id", F.col("group_id").alias("stand_in"))
        .unionByName(moves.select(F.col("stand_in").alias("image_id"), "stand_in"))
        .distinct()
    )
    return _with_group_sizes(
        members.join(moves, "stand_in", "left").select("image_id", F.coalesce("into", "stand_in").alias("group_id"))
    )


def transform_moved_groups(groups: DataFrame, moves: DataFrame) -> DataFrame:
    """``groups`` (image_id, group_id, group_size) after the merges of :func:`lakelens.graph.group_moves`
    (``moves``: stand_in, group_id, group_size, new): the members of a merged group take the merge's group_id and
    size, and the images without a group before join theirs. A night's moves are few: they are broadcast, and no
    row of ``groups`` is shuffled."""
    moved = moves.where(~F.col("new")).select(
        F.col("stand_in").alias("group_id"), F.col("group_id").alias("into"), F.col("group_size").alias("size")
    )
    kept = groups.join(F.broadcast(moved), "group_id", "left").select(
        "image_id",
        F.coalesce("into", "group_id").alias("group_id"),
        F.coalesce("size", "group_size").alias("group_size"),
    )
    joined = moves.where(F.col("new")).select(F.col("stand_in").alias("image_id"), "group_id", "group_size")
    return kept.unionByName(joined)


def transform_components(pairs: DataFrame, max_rounds: int = 100) -> DataFrame:
    """Connected components of the pair graph: (image_id, group_id, group_size), group_id its smallest image_id.

    Min-label propagation, one join per round, until no label changes (rounds ~ the longest path in a group; near-
    duplicate groups are small and dense). Each round is checkpointed locally so the plan stays short.
    """
    edges = both_directions(pairs.withColumn("w", F.lit(1)), "w").select(
        F.col("image_id").alias("src"), F.col("neighbor_id").alias("dst")
    )
    edges = edges.localCheckpoint()
    labels = edges.groupBy("src").agg(F.least(F.min("dst"), F.first("src")).alias("label"))
    labels = labels.withColumnRenamed("src", "image_id").localCheckpoint()
    for _ in range(max_rounds):
        spread = (
            edges.join(labels.withColumnRenamed("image_id", "src"), "src")
            .groupBy("dst")
            .agg(F.min("label").alias("offered"))
        )
        # A label moves when a neighbour offers a smaller one; flagged here, so no join checks what changed.
        updated = (
            labels.join(spread.withColumnRenamed("dst", "image_id"), "image_id", "left")
            .select(
                "image_id",
                F.least("label", F.coalesce("offered", "label")).alias("label"),
                (F.col("offered") < F.col("label")).alias("moved"),
            )
            .localCheckpoint()
        )
        labels = updated.select("image_id", "label")
        if updated.where(F.col("moved")).isEmpty():
            break
    else:
        raise RuntimeError(f"connected components did not settle in {max_rounds} rounds")
    return _with_group_sizes(labels.select("image_id", F.col("label").alias("group_id")))


def _with_group_sizes(labelled: DataFrame) -> DataFrame:
    """(image_id, group_id) -> (image_id, group_id, group_size)."""
    sizes = labelled.groupBy("group_id").agg(F.count("*").alias("group_size"))
    return labelled.join(sizes, "group_id").select("image_id", "group_id", "group_size")
