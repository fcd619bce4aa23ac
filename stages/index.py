"""The index stages: near-duplicates and similar images (``jobs.index`` and the nightly job run them).

Near-duplicates: each image's perceptual tokens are MinHashed (datasketch 2.x) into ``signatures``, banded exactly
as datasketch's ``MinHashLSH`` bands them into ``lsh_buckets``; images sharing a bucket are candidates, verified by
their estimated Jaccard into ``near_dup_pairs``, and grouped (connected components) into ``dup_groups``.
Similar images: the top k per image by cosine of the current embedder's vectors (``embeddings``) into ``similar``,
either exactly (``index.similar.method: exact``, blocked matrix products of the new vectors against all) or through
random-hyperplane bits banded the same way (``lsh``), whose candidates are then scored by exact cosine.

Incremental: only images without a signature (for similar: without a top-k list, or without buckets) under the
current parameters are processed, and they meet only the buckets they touch (exact: every vector, once); the pairs,
groups and top-k lists of the new and the affected images are updated. A re-run changes nothing; ``--full`` rebuilds
the current parameters' rows.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd
from pyspark import Broadcast
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakelens.config import Config
from lakelens.graph import group_moves
from lakelens.knn import LIST_COLUMNS, ExactParams, update_lists
from lakelens.knn_spark import transform_exact_candidates
from lakelens.lake import append, read_table, replace_partition
from lakelens.lsh import MinHashParams, NightBuckets, SimHashParams
from lakelens.lsh_pairs import night_pairs
from lakelens.lsh_spark import (
    Screen,
    both_directions,
    matched_pairs,
    transform_bucket_rows,
    transform_candidates,
    transform_components,
    transform_cosine,
    transform_jaccard,
    transform_leaders,
    transform_merged_groups,
    transform_moved_groups,
    transform_new_pairs,
    transform_oversized,
    transform_top_k,
    transform_touched,
)
from lakelens.progress import stage_progress
from lakelens.pyworker import worker_task
from lakelens.schemas import (
    DUP_GROUPS,
    EMBEDDINGS,
    HOT_BUCKETS,
    IMAGES,
    LSH_BUCKETS,
    LSH_PARAMS,
    NEAR_DUP_PAIRS,
    SIGNATURES,
    SIMILAR,
    TableSpec,
)
from lakelens.spark import local_frame
from models.registry import Manifest, vector_dim
from stages.annotate import configured_manifest, transform_pending_images
from udfs.signatures import MINHASH_UDF_SCHEMA, SIMHASH_UDF_SCHEMA, make_minhash_udf, make_simhash_udf

log = logging.getLogger("lakelens.index")
METHOD = "minhash-jaccard"
SEARCH_TASK = "search"
# Up to this many new hash values (64 MiB as uint32: 65,536 images at 256 permutations) a run broadcasts its new
# signatures and buckets, to pair and verify the images of the buckets they touch with numpy; larger runs pair by
# the bucket self-join (screened by the hash values' low bits) and join both signatures onto each pair in Spark.
BROADCAST_HASHES = 16 * 1024 * 1024
# Up to this many hash values in the whole lake (64 MiB as uint32: 65,536 images at 256 permutations), a run's
# pairs are found and verified in the driver (lakelens.lsh_pairs) from every signature: no bucket row is read.
DRIVER_HASHES = 16 * 1024 * 1024
# Up to this many new pairs (about 100 MB of ids in the driver), the groups they link are merged in the driver
# (scipy) and the merges broadcast; more are connected by label propagation in Spark.
DRIVER_PAIRS = 250_000
# Exact similar images: where a run's new x all vectors are at most this many scores (a 10,000-image lake's first
# night; a night of 10,000 new images on a lake of 13,000), the lists are updated in the driver: numpy does the
# scoring in about a second, where the Spark path's queries and its rewrite of the lists cost several.
DRIVER_SCORES = 1 << 27
MOVES_SCHEMA = "stand_in string, group_id string, group_size long, new boolean"  # lakelens.graph.group_moves' rows


@dataclass(frozen=True)
class NearDupCounts:
    """What the near-duplicate half of a run did."""

    params_id: str
    images: int
    hashed: int
    errors: int
    candidates: int  # verified exactly; a run through the self-join counts those past its bit screen only
    pairs_added: int
    hot_buckets: int
    groups: int
    grouped_images: int
    seconds: float

    def summary(self) -> str:
        return (
            f"near-duplicates ({self.params_id}): hashed {self.hashed} new of {self.images} images "
            f"({self.errors} error rows), {self.candidates} candidate pairs -> {self.pairs_added} verified pairs "
            f"added, {self.hot_buckets} hot buckets capped, {self.groups} groups over {self.grouped_images} images, "
            f"{self.seconds:.1f}s"
        )


@dataclass(frozen=True)
class SimilarCounts:
    """What the similar-image half of a run did."""

    params_id: str
    model: str
    embedded: int
    missing: int
    indexed: int
    candidates: int
    updated_images: int
    hot_buckets: int
    seconds: float

    def summary(self) -> str:
        hot = f", {self.hot_buckets} hot buckets capped" if self.params_id.startswith("simhash") else ""
        return (
            f"similar ({self.params_id}, {self.model}): indexed {self.indexed} new of {self.embedded} embedded images "
            f"({self.missing} images without an embedding skipped), {self.candidates} candidates scored, "
            f"top-k lists updated for {self.updated_images} images{hot}, {self.seconds:.1f}s"
        )


@dataclass(frozen=True)
class SearchIndexCounts:
    """What bucketing the search model's image vectors did."""

    params_id: str
    model: str
    embedded: int
    indexed: int
    seconds: float

    def summary(self) -> str:
        return (f"search buckets ({self.params_id}, {self.model}): bucketed {self.indexed} new of {self.embedded} "
                f"image vectors, {self.seconds:.1f}s")  # fmt: skip


def near_dup_params(cfg: Config) -> MinHashParams:
    nd = cfg.index.near_dup
    return MinHashParams(num_perm=nd.num_perm, seed=nd.seed, threshold=nd.lsh_threshold, recipe=nd.recipe)


def record_params(spark: SparkSession, cfg: Config, kind: str, params_id: str, params: dict) -> None:
    """Add the scheme to ``lsh_params`` the first time it is used."""
    known = read_table(spark, cfg, LSH_PARAMS).where(F.col("params_id") == params_id)
    if known.isEmpty():
        now = datetime.now(UTC).replace(tzinfo=None)
        row = [(params_id, kind, json.dumps(params, sort_keys=True), now)]
        append(local_frame(spark, row, LSH_PARAMS.schema), cfg, LSH_PARAMS)


def _buckets(spark: SparkSession, cfg: Config, kind: str, params_id: str) -> DataFrame:
    rows = read_table(spark, cfg, LSH_BUCKETS)
    return rows.where((F.col("kind") == kind) & (F.col("params_id") == params_id))


def _unless(full: bool, rows: DataFrame) -> DataFrame:
    """``rows``, or none of them where a full rebuild computes everything again."""
    return rows.where(F.lit(False)) if full else rows


def _write(df: DataFrame, cfg: Config, spec: TableSpec, full: bool, **partition: str) -> None:
    """Append ``df``; a full rebuild instead swaps the whole partition in at once, so that readers see the old rows
    until the new ones are complete, and a rebuild that fails leaves the old ones."""
    if full:
        replace_partition(df, cfg, spec, **partition)
    else:
        append(df, cfg, spec)


def _write_new(
    df: DataFrame, existing: DataFrame, on: list[str], cfg: Config, spec: TableSpec, full: bool, **partition: str
) -> None:
    """:func:`_write` of the rows of ``df`` that ``existing`` lacks (by ``on``): a re-run after a crash adds no
    duplicates."""
    _write(df if full else df.join(existing.select(*on).distinct(), on, "left_anti"), cfg, spec, full, **partition)


def _hot_rows(hot: DataFrame, kind: str, params_id: str, now: datetime) -> DataFrame:
    return hot.select(
        "band", "key", "size", "leader", F.lit(now).cast("timestamp").alias("indexed_at"),
        F.lit(kind).alias("kind"), F.lit(params_id).alias("params_id"),
    )  # fmt: skip


def index_near_duplicates(spark: SparkSession, cfg: Config, full: bool = False) -> NearDupCounts:
    """Sign new images, pair them through their buckets, verify, and regroup."""
    started = time.monotonic()
    params = near_dup_params(cfg)
    pid = params.params_id
    record_params(spark, cfg, "minhash", pid, asdict(params) | {"bands": list(params.bands)})
    images = read_table(spark, cfg, IMAGES)
    signed_before = _unless(full, read_table(spark, cfg, SIGNATURES).where(F.col("params_id") == pid))
    signed_ids = signed_before.select("image_id").distinct().withColumn("signed", F.lit(True))
    flags = images.select("image_id", "ingest_date").distinct().join(signed_ids, "image_id", "left").cache()
    unsigned = F.col("signed").isNull()
    counted = flags.agg(
        F.count("*").alias("images"),
        F.count_if(unsigned).alias("pending"),
        F.min(F.when(unsigned, F.col("ingest_date"))).alias("since"),
    ).first()
    n_images, n_pending = counted["images"], counted["pending"]
    pending_ids = flags.where(unsigned).select("image_id")
    hashed = errors = candidates = added = n_hot = 0
    if n_pending:
        now = datetime.now(UTC).replace(microsecond=0, tzinfo=None)
        # A nightly increment is small: broadcast its ids rather than shuffle every image's bytes to find them.
        small = n_pending <= cfg.ingest.broadcast_rows
        pending = transform_pending_images(images, pending_ids, counted["since"], small)
        cores = spark.sparkContext.defaultParallelism
        if pending.rdd.getNumPartitions() < cores:
            pending = pending.repartition(cores)
        signed = pending.mapInPandas(
            worker_task(make_minhash_udf(params, cfg.ingest.max_pixels)), MINHASH_UDF_SCHEMA
        ).cache()
        with stage_progress(spark, "signatures", n_pending):
            counted = signed.agg(F.count("*").alias("rows"), F.count("error").alias("errors")).first()
        hashed, errors = counted["rows"], counted["errors"]
        if hashed != n_pending:
            raise RuntimeError(f"signatures: {n_pending} images went in but {hashed} rows came out")
        new_buckets = transform_bucket_rows(signed, "minhash", pid).cache()
        # The stored rows of pending images are a crashed run's: neither old partners nor to be written again.
        stored = _unless(full, _buckets(spark, cfg, "minhash", pid))
        signatures = signed_before.select("image_id", "minhash").unionByName(signed.select("image_id", "minhash"))
        if n_images * params.num_perm <= DRIVER_HASHES:
            paired = _pair_in_the_driver(spark, cfg, params, signed, signed_before, stored)
        elif n_pending * params.num_perm <= BROADCAST_HASHES:
            paired = _pair_with_night(spark, cfg, signed, new_buckets, stored, pending_ids, signatures, n_pending)
        else:
            old_buckets = stored.join(pending_ids, "image_id", "left_anti")
            paired = _pair_all(spark, cfg, params, signed, old_buckets, signatures, n_pending)
        candidates, added, n_hot = paired.candidates, paired.added, paired.n_hot
        rows = paired.verified.select("*", F.lit(METHOD).alias("method"), F.lit(pid).alias("params_id"))
        existing_pairs = read_table(spark, cfg, NEAR_DUP_PAIRS).where(F.col("params_id") == pid)
        _write_new(rows, existing_pairs, ["image_id_a", "image_id_b"], cfg, NEAR_DUP_PAIRS, full, params_id=pid)
        if added and not full:
            merge_groups(spark, cfg, pid, paired.verified, added)
        if n_hot:
            log.warning("near-duplicates: %d hot buckets (over %d images) linked to their leader only; see %s",
                        n_hot, cfg.index.hot_bucket_size, HOT_BUCKETS.name)  # fmt: skip
        if n_hot or full:
            _write(_hot_rows(paired.hot, "minhash", pid, now), cfg, HOT_BUCKETS, full, kind="minhash", params_id=pid)
        # Dropped before the writes below: Spark would otherwise plan again every cached result of a table written.
        paired.release()
        flags.unpersist()
        # Buckets, then signatures last: a signature marks an image done, so a crash before it redoes the image.
        # Buckets a crashed run left are the pending images' own: the night's pairing found them among the touched
        # buckets; otherwise only those images' rows are read, to leave them out.
        if paired.left_by_crash is None:
            new_ids = signed.select("image_id")
            left = _buckets(spark, cfg, "minhash", pid).join(F.broadcast(new_ids) if small else new_ids, "image_id",
                                                              "left_semi")  # fmt: skip
        else:
            left = local_frame(spark, [(i,) for i in paired.left_by_crash], "image_id string")
        _write_new(new_buckets, left, ["image_id"], cfg, LSH_BUCKETS, full, kind="minhash", params_id=pid)
        new_buckets.unpersist()
        sig_rows = signed.select(
            "image_id", "minhash", "tokens", "error", F.lit(params.scheme).alias("scheme"),
            F.lit(params.num_perm).alias("num_perm"), F.lit(params.seed).cast("long").alias("seed"),
            F.lit(params.recipe).alias("recipe"), F.lit(now).cast("timestamp").alias("indexed_at"),
            F.lit(pid).alias("params_id"),
        )  # fmt: skip
        _write(sig_rows, cfg, SIGNATURES, full, params_id=pid)
        signed.unpersist()
    flags.unpersist()
    groups, grouped = regroup(spark, cfg, pid) if full else _group_counts(spark, cfg, pid)
    return NearDupCounts(
        pid, n_images, hashed, errors, candidates, added, n_hot, groups, grouped, time.monotonic() - started
    )


@dataclass
class _Paired:
    """A run's verified new pairs (cached until :meth:`release`), its number of candidates and its hot buckets;
    ``left_by_crash``: the pending images whose bucket rows a crashed run stored (None: not looked for)."""

    candidates: int
    verified: DataFrame
    added: int
    hot: DataFrame
    n_hot: int
    held: tuple[DataFrame | Broadcast, ...]
    left_by_crash: list[str] | None = None

    def release(self) -> None:
        for held in self.held:
            if isinstance(held, Broadcast):
                held.destroy()
            else:
                held.unpersist()


def _pair_all(
    spark: SparkSession,
    cfg: Config,
    params: MinHashParams,
    signed: DataFrame,
    old: DataFrame,
    signatures: DataFrame,
    n_pending: int,
) -> _Paired:
    """Candidate pairs by the bucket self-join, screened there by the low bits of their hash values, then verified
    by joining both signatures onto each pair: for runs with too many new images to broadcast. Its candidates
    are those the screen kept (the night path counts every candidate)."""
    threshold = cfg.index.near_dup.threshold
    screen = Screen.at(params.num_perm, threshold)
    new = screen.bucket_rows(signed, params.params_id)
    old = old.join(signatures.select("image_id", screen.words()), "image_id")
    found = transform_candidates(new, old, cfg.index.hot_bucket_size, screen)
    pairs = found.pairs.cache()
    with stage_progress(spark, "near-duplicates: candidate pairs", n_pending):
        candidates = pairs.count()
    verified = transform_jaccard(pairs, signatures, threshold).cache()
    with stage_progress(spark, "near-duplicates: verifying pairs", n_pending):
        added = verified.count()
    hot = found.hot.cache()
    return _Paired(candidates, verified, added, hot, hot.count(), (pairs, verified, hot))


def _pair_in_the_driver(
    spark: SparkSession, cfg: Config, params: MinHashParams, signed: DataFrame, before: DataFrame, stored: DataFrame
) -> _Paired:
    """The same pairs for a lake whose signatures fit in the driver: the stored signatures and the run's new ones
    are collected, and :func:`lakelens.lsh_pairs.night_pairs` bands and verifies them there. The bucket rows are not
    read, except to look for those a crashed run stored for the pending images, where the table holds more than
    the old signatures' ``b`` rows each."""
    columns = ["image_id", "minhash"]
    old = before.where(F.col("minhash").isNotNull()).select(*columns).toPandas()
    new = signed.where(F.col("minhash").isNotNull()).select(*columns).toPandas()
    frame = pd.concat([old, new], ignore_index=True)
    matrix = np.stack(frame["minhash"].to_numpy()) if len(frame) else np.zeros((0, params.num_perm), np.uint32)
    is_new = np.arange(len(frame)) >= len(old)
    b, r = params.bands
    started = time.monotonic()
    found = night_pairs(frame["image_id"].to_numpy(object), matrix, is_new, b, r,
                        cfg.index.near_dup.threshold, cfg.index.hot_bucket_size)  # fmt: skip
    log.info("near-duplicates: %d new of %d images paired in the driver, %d candidates verified in %.1fs",
             len(new), len(frame), found.candidates, time.monotonic() - started)  # fmt: skip
    verified = local_frame(spark, found.pairs, "image_id_a string, image_id_b string, similarity float")
    hot = local_frame(spark, found.hot, "band int, key binary, size long, leader string")
    left_by_crash = [] if stored.count() == b * len(old) else None
    return _Paired(found.candidates, verified, len(found.pairs), hot, len(found.hot), (), left_by_crash)


def _pair_with_night(
    spark: SparkSession,
    cfg: Config,
    signed: DataFrame,
    new: DataFrame,
    stored: DataFrame,
    pending_ids: DataFrame,
    signatures: DataFrame,
    n_pending: int,
) -> _Paired:
    """The same pairs for a run whose new signatures fit a broadcast (a night's images): the stored bucket rows in
    the buckets the new images touch are read once, and each of those images is verified against the new ones
    by numpy; no pair is shuffled. Rows a crashed run stored for the pending images are in those buckets (the
    same keys): they are found there, not by reading every bucket row again."""
    reached = transform_touched(new, stored).cache()
    left_by_crash = [r["image_id"] for r in reached.join(pending_ids, "image_id", "left_semi").select("image_id")
                     .distinct().collect()]  # fmt: skip
    touched = reached.join(pending_ids, "image_id", "left_anti")
    members = new.select("image_id", "band", "key").unionByName(touched.select("image_id", "band", "key"))
    # Leaders are looked for only where some bucket is over the cap (most nights none is).
    oversized = transform_oversized(members, cfg.index.hot_bucket_size).collect()
    hot_rows = []
    if oversized:
        over = local_frame(spark, oversized, "band int, key binary, size long")
        hot_rows = transform_leaders(members, over).collect()
    rows = signed.where(F.col("minhash").isNotNull()).select("image_id", "minhash", "keys").toPandas()
    matrix = np.stack(rows["minhash"].to_numpy()) if len(rows) else np.zeros((0, 1), np.uint32)
    leaders = {(r["band"], bytes(r["key"])): r["leader"] for r in hot_rows}
    night = spark.sparkContext.broadcast(NightBuckets.build(rows["image_id"], matrix, rows["keys"], leaders))
    scored = transform_new_pairs(members, signatures, night, cfg.index.near_dup.threshold).cache()
    with stage_progress(spark, "near-duplicates: pairing and verifying", n_pending):
        counted = scored.agg(F.sum("candidates").alias("candidates"), F.sum(F.size("matches")).alias("added")).first()
    hot = local_frame(spark, hot_rows, "band int, key binary, size long, leader string")
    return _Paired(
        counted["candidates"] or 0, matched_pairs(scored), counted["added"] or 0, hot, len(hot_rows),
        (reached, scored, night), left_by_crash,
    )  # fmt: skip


def merge_groups(spark: SparkSession, cfg: Config, params_id: str, new_pairs: DataFrame, added: int) -> None:
    """Update ``dup_groups`` of ``params_id`` for the ``added`` pairs a run verified (``new_pairs``): only the groups
    they touch change; where they merge none (pairs inside a group), the table is not written."""
    before = read_table(spark, cfg, DUP_GROUPS).where(F.col("params_id") == params_id).drop("params_id")
    groups = (
        transform_merged_groups(before, new_pairs) if added > DRIVER_PAIRS else merged_in_the_driver(before, new_pairs)
    )
    if groups is not None:
        replace_partition(groups.withColumn("params_id", F.lit(params_id)), cfg, DUP_GROUPS, params_id=params_id)


def merged_in_the_driver(before: DataFrame, new_pairs: DataFrame) -> DataFrame | None:
    """The groups ``before`` after a night's few ``new_pairs`` join them (None where they merge no group): the pairs
    and their images' group rows are collected, :func:`lakelens.graph.group_moves` finds the merges, and
    :func:`transform_moved_groups` applies them."""
    spark = before.sparkSession
    pairs = new_pairs.select("image_id_a", "image_id_b").toPandas()
    ids = pd.DataFrame({"image_id": pd.unique(pd.concat([pairs["image_id_a"], pairs["image_id_b"]]))})
    wanted = F.broadcast(spark.createDataFrame(ids, "image_id string"))
    moves = group_moves(before.join(wanted, "image_id", "left_semi").toPandas(), pairs)
    return None if moves.empty else transform_moved_groups(before, spark.createDataFrame(moves, MOVES_SCHEMA))


def regroup(spark: SparkSession, cfg: Config, params_id: str) -> tuple[int, int]:
    """Rebuild ``dup_groups`` of ``params_id`` from all its pairs (connected components); (groups, images)."""
    pairs = read_table(spark, cfg, NEAR_DUP_PAIRS).where(F.col("params_id") == params_id)
    groups = transform_components(pairs.select("image_id_a", "image_id_b"))
    replace_partition(groups.withColumn("params_id", F.lit(params_id)), cfg, DUP_GROUPS, params_id=params_id)
    return _group_counts(spark, cfg, params_id)


def _group_counts(spark: SparkSession, cfg: Config, params_id: str) -> tuple[int, int]:
    rows = read_table(spark, cfg, DUP_GROUPS).where(F.col("params_id") == params_id)
    counted = rows.agg(F.countDistinct("group_id").alias("groups"), F.count("*").alias("images")).first()
    return counted["groups"], counted["images"]


def similar_params(cfg: Config, embedder: Manifest) -> ExactParams | SimHashParams:
    """The parameters of ``embedder``'s top-k lists under ``index.similar``."""
    sim = cfg.index.similar
    model, dim = f"{embedder.name}:{embedder.version}", vector_dim(embedder)
    if sim.method == "exact":
        return ExactParams(model=model, dim=dim)
    return SimHashParams(model=model, dim=dim, bands=sim.bands, rows=sim.rows, seed=sim.seed)


def index_similar(spark: SparkSession, cfg: Config, full: bool = False) -> SimilarCounts | None:
    """Rank the new embeddings against all (exactly, or through SimHash buckets), and update the top-k lists that
    they change."""
    started = time.monotonic()
    embedder = configured_manifest(cfg, "embed")
    params = similar_params(cfg, embedder)
    name, version, model = embedder.name, embedder.version, params.model
    vectors = (
        read_table(spark, cfg, EMBEDDINGS)
        .where((F.col("model") == name) & (F.col("model_version") == version) & F.col("vector").isNotNull())
        .select("image_id", "vector")
        .cache()
    )
    pid = params.params_id
    exact = isinstance(params, ExactParams)
    old = _unless(full, read_table(spark, cfg, SIMILAR).where(F.col("params_id") == pid))
    # Done: an image with a top-k list (exact), or with buckets (lsh, where an image may have no candidates).
    done = old if exact else _unless(full, _buckets(spark, cfg, "simhash", pid))
    done_ids = done.select("image_id").distinct().withColumn("done", F.lit(True))
    # Images, their vectors and those still to index counted in one job, which also fills the cache of the vectors.
    images = read_table(spark, cfg, IMAGES).select("image_id").distinct().withColumn("image", F.lit(True))
    embedded = vectors.select("image_id", F.lit(True).alias("embedded"))
    counted = (
        images.join(embedded, "image_id", "full")
        .join(done_ids, "image_id", "left")
        .agg(F.count("image"), F.count("embedded"), F.count_if(F.col("embedded") & F.col("done").isNull()))
        .first()
    )
    n_images, n_embedded, n_pending = counted[0], counted[1], counted[2]
    if n_embedded == 0:
        log.warning("similar: no embeddings from %s yet; run python -m jobs.annotate --tasks embed", model)
        vectors.unpersist()
        return None
    record_params(spark, cfg, "exact" if exact else "simhash", pid, asdict(params))
    candidates = updated = n_hot = 0
    if n_pending and exact and n_pending * n_embedded <= DRIVER_SCORES:
        candidates, updated = _lists_in_the_driver(vectors, old, cfg.index.similar.k, model, cfg, pid)
    elif n_pending:
        pending = vectors.join(done_ids, "image_id", "left_anti").cache()
        k = cfg.index.similar.k
        if exact:
            # An image's floor is its k-th cosine (-inf while its list is shorter): its rank-1 and rank-k rows say.
            lists = (
                old.where(F.col("rank").isin(1, k))
                .groupBy("image_id")
                .agg(F.when(F.max("rank") >= k, F.min("cosine")).otherwise(float("-inf")).cast("double").alias("floor"))
            )
            floored = vectors.join(lists, "image_id", "left").fillna(float("inf"), ["floor"])
            found = transform_exact_candidates(pending, n_pending, floored, n_embedded, k, cfg.index.similar.block)
            scored, hot, new_buckets = found.cache(), None, None
            with stage_progress(spark, "similar: exact top-k", n_pending):
                counted = scored.agg(F.count("*"), F.countDistinct("image_id")).first()
            candidates, updated = counted[0], counted[1]
        else:
            scored, hot, new_buckets = _lsh_candidates(spark, cfg, params, pending, vectors, full)
            with stage_progress(spark, "similar: scoring candidates", n_pending):
                counted = scored.agg(F.count("*"), F.countDistinct("image_id")).first()
            candidates, updated = counted[0] // 2, counted[1]  # scored rows hold each pair in both directions
            n_hot = hot.count()
            if n_hot:
                log.warning("similar: %d hot buckets (over %d images) linked to their leader only; see %s",
                            n_hot, cfg.index.hot_bucket_size, HOT_BUCKETS.name)  # fmt: skip
        affected = scored.select("image_id").distinct()
        kept = old.join(affected, "image_id", "left_semi").select("image_id", "neighbor_id", "cosine")
        merged = transform_top_k(scored.unionByName(kept).dropDuplicates(["image_id", "neighbor_id"]), k)
        merged = merged.select("*", F.lit(model).alias("model"), F.lit(pid).alias("params_id"))
        result = old.join(affected, "image_id", "left_anti").unionByName(merged)
        if n_hot or (full and hot is not None):
            now = datetime.now(UTC).replace(microsecond=0, tzinfo=None)
            _write(_hot_rows(hot, "simhash", pid, now), cfg, HOT_BUCKETS, full, kind="simhash", params_id=pid)
        replace_partition(result, cfg, SIMILAR, params_id=pid)
        if new_buckets is not None:  # last: they mark an image done, so a crash before them redoes it
            _write(new_buckets, cfg, LSH_BUCKETS, full, kind="simhash", params_id=pid)
        for df in (new_buckets, scored, hot, pending):
            if df is not None:
                df.unpersist()
    vectors.unpersist()
    return SimilarCounts(
        pid, model, n_embedded, n_images - n_embedded, n_pending, candidates, updated, n_hot,
        time.monotonic() - started,
    )  # fmt: skip


def search_params(cfg: Config, model: Manifest) -> SimHashParams | None:
    """The SimHash scheme of the text model ``model``'s image vectors under ``index.search``; None where search
    scores every vector (``method: exact``)."""
    sc = cfg.index.search
    if sc.method == "exact":
        return None
    return SimHashParams(f"{model.name}:{model.version}", vector_dim(model), sc.bands, sc.rows, sc.seed)


def buckets_for_search(cfg: Config) -> bool:
    """Whether the index buckets the search model's image vectors: the search task runs, with ``method: lsh``."""
    return SEARCH_TASK in cfg.annotate.tasks and cfg.index.search.method == "lsh"


def index_search(spark: SparkSession, cfg: Config, full: bool = False) -> SearchIndexCounts | None:
    """Bucket the search model's image vectors that have no buckets yet (``index.search.method: lsh``; None where
    it is exact or the lake has no such vectors). An image's band-0 row marks it done, so a re-run adds nothing."""
    started = time.monotonic()
    model = configured_manifest(cfg, SEARCH_TASK)
    params = search_params(cfg, model)
    if params is None:
        return None
    pid = params.params_id
    vectors = (
        read_table(spark, cfg, EMBEDDINGS)
        .where((F.col("model") == model.name) & (F.col("model_version") == model.version) & F.col("vector").isNotNull())
        .select("image_id", "vector")
    )
    embedded = vectors.count()
    if not embedded:
        log.warning("search buckets: no image vectors from %s yet; run python -m jobs.annotate --tasks search",
                    params.model)  # fmt: skip
        return None
    record_params(spark, cfg, "simhash", pid, asdict(params))
    done = _unless(full, _buckets(spark, cfg, "simhash", pid).where(F.col("band") == 0)).select("image_id")
    pending = vectors.join(done, "image_id", "left_anti")
    signed = pending.mapInPandas(worker_task(make_simhash_udf(params)), SIMHASH_UDF_SCHEMA)
    buckets = transform_bucket_rows(signed, "simhash", pid).cache()
    with stage_progress(spark, "search: bucketing image vectors", embedded):
        indexed = buckets.where(F.col("band") == 0).count()
    if indexed or full:
        _write(buckets, cfg, LSH_BUCKETS, full, kind="simhash", params_id=pid)
    buckets.unpersist()
    return SearchIndexCounts(pid, params.model, embedded, indexed, time.monotonic() - started)


def _lists_in_the_driver(
    vectors: DataFrame, old: DataFrame, k: int, model: str, cfg: Config, params_id: str
) -> tuple[int, int]:
    """The exact lists of a lake whose vectors and lists fit in the driver, updated there by
    :func:`lakelens.knn.update_lists` and written back whole; (candidates, images updated)."""
    spark = vectors.sparkSession
    frame, before = vectors.toPandas(), old.select(*LIST_COLUMNS).toPandas()
    started = time.monotonic()
    lists, candidates, updated = update_lists(frame["image_id"].to_numpy(object), np.stack(frame["vector"]), before, k)
    log.info("similar: top-k lists of %d images updated in the driver (%d candidates) in %.1fs",
             updated, candidates, time.monotonic() - started)  # fmt: skip
    rows = local_frame(spark, lists.assign(model=model, params_id=params_id), SIMILAR.schema)
    replace_partition(rows, cfg, SIMILAR, params_id=params_id)
    return candidates, updated


def _lsh_candidates(
    spark: SparkSession, cfg: Config, params: SimHashParams, pending: DataFrame, vectors: DataFrame, full: bool
) -> tuple[DataFrame, DataFrame, DataFrame]:
    """(scored rows in both directions, hot buckets, the new images' bucket rows), all cached."""
    pid = params.params_id
    signed = pending.mapInPandas(worker_task(make_simhash_udf(params)), SIMHASH_UDF_SCHEMA)
    new_buckets = transform_bucket_rows(signed, "simhash", pid).cache()
    found = transform_candidates(new_buckets, _unless(full, _buckets(spark, cfg, "simhash", pid)),
                                 cfg.index.hot_bucket_size)  # fmt: skip
    scored = both_directions(transform_cosine(found.pairs, vectors), "cosine").cache()
    return scored, found.hot.cache(), new_buckets
