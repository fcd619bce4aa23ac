"""The ingest stage: a source's files into the lake's ``images`` and ``image_uris`` (``jobs.ingest`` and the
nightly job run it).

Executors read, hash and decode-check the files; the driver only lists folders. New content goes to ``images``
(one row per distinct SHA-256), every uri to ``image_uris``. Re-running on the same source adds nothing: a uri
already ingested with the same size and modification time is not read again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import partial

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, Observation, SparkSession
from pyspark.sql import functions as F

from lakelens.config import Config, IngestConfig
from lakelens.files import Listing, normalise_uri
from lakelens.ingest_rows import FILES_SCHEMA, READ_SCHEMA, check_bytes, read_files
from lakelens.lake import append, has_rows, read_table
from lakelens.progress import stage_progress
from lakelens.pyworker import worker_task
from lakelens.schemas import IMAGE_URIS, IMAGES
from lakelens.sources import Source, extract_candidates, open_source, read_partitions
from lakelens.spark import session_conf

log = logging.getLogger("lakelens.ingest")


@dataclass(frozen=True)
class IngestCounts:
    """What one ingest run did. ``read == good + errors``; ``new_images + duplicates == read``."""

    listed: int
    unchanged: int
    read: int
    good: int
    errors: int
    new_images: int
    duplicates: int
    new_uris: int
    seconds: float
    note: str = ""  # what the listing of a folder skipped, or why it found nothing

    def summary(self) -> str:
        rate = self.read / self.seconds if self.seconds else 0.0
        note = f"\n  {self.note}" if self.note else ""
        return (
            f"ingest: listed {self.listed}, unchanged {self.unchanged}, read {self.read} "
            f"(good {self.good} + errors {self.errors}), new images {self.new_images}, "
            f"duplicates {self.duplicates}, new uris {self.new_uris}, {self.seconds:.1f}s, {rate:.0f} images/s{note}"
        )


def transform_unseen(candidates: DataFrame, known_uris: DataFrame) -> DataFrame:
    """Candidates not yet ingested with the same size and modification time (null-safe, so a file that could
    not be stat-ed is not read again on every run once it has its error row)."""
    known = known_uris.select("uri", "size", "modified").distinct()
    cond = [
        candidates["uri"] == known["uri"],
        candidates["size"].eqNullSafe(known["size"]),
        candidates["modified"].eqNullSafe(known["modified"]),
    ]
    return candidates.join(known, on=cond, how="left_anti").select(*FILES_SCHEMA.fieldNames())


def transform_read(files: DataFrame, partitions: int, ingest_cfg: IngestConfig) -> DataFrame:
    """Read, hash and decode-check every file on the executors: READ_SCHEMA, one row per input row."""
    reader = partial(
        read_files,
        max_bytes=ingest_cfg.max_bytes,
        max_pixels=ingest_cfg.max_pixels,
        batch_bytes=ingest_cfg.batch_bytes,
        threads=ingest_cfg.read_threads,
    )
    return files.repartition(partitions).mapInPandas(worker_task(reader), READ_SCHEMA)


def transform_check_bytes(table: DataFrame, source: Source, ingest_cfg: IngestConfig) -> DataFrame:
    """READ_SCHEMA rows for a table that holds image bytes (in ``source.bytes_column``, with maybe a uri column)."""
    uri_col = source.uri_column
    uri: Column = F.col(uri_col).cast("string") if uri_col else F.lit(None).cast("string")
    rows = table.select(uri.alias("uri"), F.col(source.bytes_column).alias("bytes"))
    checker = partial(
        check_bytes,
        source=normalise_uri(source.uri),
        max_pixels=ingest_cfg.max_pixels,
        batch_bytes=ingest_cfg.batch_bytes,
        threads=ingest_cfg.read_threads,
    )
    # A table may repeat a row; each (image_id, uri) counts once, as a folder's files do.
    return rows.mapInPandas(worker_task(checker), READ_SCHEMA).dropDuplicates(["image_id", "uri"])


def transform_new_images(
    read: DataFrame, known_images: DataFrame | None, ingest_date: date, broadcast_ids: bool
) -> DataFrame:
    """One ``images`` row per image_id not in the lake yet (``known_images`` None: the lake has none); its uri
    is the first by name among this run's. ``read`` must hold each (image_id, uri) once.

    The choice is made on (image_id, uri) alone and joined back; with ``broadcast_ids`` that join is a broadcast,
    so the image bytes are neither shuffled nor sorted.
    """
    firsts = read.groupBy("image_id").agg(F.min("uri").alias("uri"))
    if known_images is not None:
        firsts = firsts.join(known_images.select("image_id"), on="image_id", how="left_anti")
    return (
        read.join(F.broadcast(firsts) if broadcast_ids else firsts, on=["image_id", "uri"], how="left_semi")
        .withColumn("ingest_date", F.lit(ingest_date))
        .select(*IMAGES.columns)
    )


def transform_new_uris(read: DataFrame, known_uris: DataFrame | None, ingest_date: date) -> DataFrame:
    """``image_uris`` rows for this run's files that the lake does not record yet (``known_uris`` None: none)."""
    keys = ["image_id", "uri", "size", "modified"]
    rows = read.select(*keys)
    if known_uris is not None:
        known = known_uris.select(*keys).distinct()
        rows = rows.join(known, on=[rows[k].eqNullSafe(known[k]) for k in keys], how="left_anti")
    return rows.withColumn("ingest_date", F.lit(ingest_date)).select(*IMAGE_URIS.columns)


def ingest(
    spark: SparkSession,
    cfg: Config,
    source: Source | str,
    ingest_date: date | None = None,
    images_written: Callable[[], None] = lambda: None,
) -> IngestCounts:
    """Ingest one source (a path is opened with :func:`open_source`) into the lake and return what was done (the
    job's whole body, without argv). ``images_written()`` is called once the new ``images`` rows are in (what the
    other stages read), before ``image_uris`` (which only ingest reads) is written."""
    started = time.monotonic()
    ingest_date = ingest_date or datetime.now(UTC).date()
    source = open_source(source) if isinstance(source, str) else source
    log.info("ingest: source %s (%s) into %s", source.uri, source.format, cfg.lake.database)
    # None stands for an empty table: the first ingest skips joins against nothing.
    known_uris = read_table(spark, cfg, IMAGE_URIS) if has_rows(spark, cfg, IMAGE_URIS) else None
    known_images = read_table(spark, cfg, IMAGES) if has_rows(spark, cfg, IMAGES) else None
    ingest_cfg = cfg.ingest

    candidates = unseen = read = None  # cached along the way; released however the run ends
    note = ""
    try:
        with session_conf(spark, "spark.sql.execution.arrow.maxRecordsPerBatch", str(ingest_cfg.arrow_batch_rows)):
            if source.bytes_column is not None:
                table = spark.read.parquet(normalise_uri(source.uri))
                listed = table.count()
                read = transform_check_bytes(table, source, ingest_cfg)
                unchanged = 0
                recorded = known_uris  # a table's rows are checked against every uri the lake records
            else:
                candidates, listed, listing = extract_candidates(spark, cfg, source)
                note = listing_note(source, listing, ingest_cfg.patterns) if listing else ""
                if note:
                    log.info("ingest: %s", note)
                unseen, to_read = candidates, listed
                if known_uris is not None:
                    unseen = transform_unseen(candidates, known_uris).persist(StorageLevel.MEMORY_AND_DISK)
                    to_read = unseen.count()
                unchanged = listed - to_read
                log.info(
                    "ingest: %d files listed, %d unchanged since the last ingest, %d to read",
                    listed,
                    unchanged,
                    to_read,
                )
                if to_read == 0:  # an unchanged source: nothing to read, nothing to write
                    return IngestCounts(listed, unchanged, 0, 0, 0, 0, 0, 0, time.monotonic() - started, note)
                read = transform_read(unseen, read_partitions(spark, to_read, cfg), ingest_cfg)
                recorded = None  # the files read are those whose (uri, size, modified) the lake does not record

            # Files are read once, into the cache, by this count; both writes then take rows from the cache.
            read = read.persist(StorageLevel.MEMORY_AND_DISK)
            with stage_progress(spark, "ingest: reading", total_rows=listed - unchanged):
                totals = read.agg(F.count(F.lit(1)).alias("n"), F.count("error").alias("errors")).first()
            images_seen, uris_seen = Observation("images"), Observation("uris")
            n_read, n_errors = int(totals["n"]), int(totals["errors"])
            broadcast_ids = n_read <= ingest_cfg.broadcast_rows
            new_images = transform_new_images(read, known_images, ingest_date, broadcast_ids)
            # images first: a crash before image_uris is written only makes the next run read those files again.
            append(new_images.observe(images_seen, F.count(F.lit(1)).alias("n")), cfg, IMAGES)
            images_written()
            new_uris = transform_new_uris(read, recorded, ingest_date)
            append(new_uris.observe(uris_seen, F.count(F.lit(1)).alias("n")), cfg, IMAGE_URIS)
    finally:
        for cached in (read, unseen, candidates):
            if cached is not None:
                cached.unpersist()

    n_images = images_seen.get["n"]
    return IngestCounts(
        listed=listed,
        unchanged=unchanged,
        read=n_read,
        good=n_read - n_errors,
        errors=n_errors,
        new_images=n_images,
        duplicates=n_read - n_images,
        new_uris=uris_seen.get["n"],
        seconds=time.monotonic() - started,
        note=note,
    )


def listing_note(source: Source, listing: Listing, patterns: Sequence[str]) -> str:
    """What a user should know of a folder's listing: that it found no image files, and what it skipped."""
    skipped = []
    if listing.repeated_folders:
        skipped.append(
            f"{listing.repeated_folders} links to folders already listed (symbolic link loops or second paths) "
            "not followed"
        )
    if listing.unreadable_folders:
        skipped.append(f"{listing.unreadable_folders} folders that could not be read")
    if listing.files:
        return "; ".join(skipped)
    found = (
        f"{listing.unmatched} files there, none named like {', '.join(patterns)} (--glob to widen)"
        if listing.unmatched
        else "the folder holds no files"
    )
    return "; ".join([f"no image files in {source.uri}: {found}", *skipped])
