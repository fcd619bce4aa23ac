"""Search the lake's images by text (what ``jobs.search`` wires), in the space of the text-image model that the
``search`` task runs (``annotate.models.search``; ``models.text_image``).

Every image's vector was written to ``embeddings`` under that model by the annotate task; a query's vector is made
once by the model's text tower, then ranked against them by cosine.

- One query (:func:`search_text`): no Spark; the model's vectors are read from the lake's Parquet files (64 floats
  an image: 26 MB for 100,000 images) and ranked exactly; with ``index.search.method: lsh``, only the images of the
  buckets the query probes (read from ``lsh_buckets``, which ``jobs.index`` fills) and those not bucketed yet.
- A batch (:func:`transform_search_results`): Spark; the query vectors (computed once, on the driver) travel with
  the task to every partition of the image vectors, each keeps every query's best ``k`` of its own images, and a
  window ranks those: queries x images scores (with ``lsh``, only the pairs that share a probed bucket:
  ``lakelens.probe_search``), never a shuffle of them.

- Pair verification (:func:`verify`): same or different, by the configured embedder's cosine and the threshold its
  training chose on held-out pairs.

Example:
    >>> hits = search_text(cfg, "a small green star above a blue circle", k=10)
    >>> results = transform_search_results(vectors, queries, query_vectors, k=10, ...)   # a DataFrame
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import torch
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import FloatType, StringType, StructField, StructType

from lakelens.config import Config
from lakelens.errors import InputError
from lakelens.lake import table_dataset
from lakelens.lsh import SimHashParams, code_key, hyperplanes, simhash_codes, simhash_probe_codes
from lakelens.probe_search import ProbeTable, probed_best_k
from lakelens.schemas import EMBEDDINGS, LSH_BUCKETS
from models.embedder_training import VERIFY_FAR
from models.registry import Manifest, model_from_bytes
from models.text_image import query_vectors
from models.vocabulary import Vocabulary
from stages.annotate import configured_entry
from stages.index import SEARCH_TASK, search_params
from stages.query import read, uris_of
from udfs.embed import EmbedPredictor

log = logging.getLogger("lakelens.search")
# Image vectors scored against the queries at a time: bounds the score matrix at queries x this many floats.
SCORE_BLOCK = 65536


class SearchError(InputError, ValueError):
    """The search cannot be answered as asked: no image vectors from the text model yet, no queries."""


@dataclass(frozen=True)
class Hit:
    rank: int
    image_id: str
    score: float


def query_id(text: str) -> str:
    """A query's stable id: the first 16 hex digits of SHA-256 of its text."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def text_vectors(cfg: Config, texts: Sequence[str]) -> tuple[np.ndarray, Manifest]:
    """float32 [Q, dim] unit vectors of ``texts`` by the configured search model's text tower, and its manifest.

    Raises:
        InputError: a text has no words. RegistryError: the model is missing or not a text-image model.
    """
    manifest, weights = configured_entry(cfg, SEARCH_TASK)
    model = model_from_bytes(manifest, weights)
    vocabulary = Vocabulary(manifest.vocabulary) if manifest.vocabulary else None
    return query_vectors(model, texts, vocabulary).numpy(), manifest


def no_vectors(manifest: Manifest) -> SearchError:
    """The refusal of a search in a lake without image vectors from the text model of ``manifest``."""
    return SearchError(
        f"the lake has no image vectors from the text model {manifest.name} {manifest.version} yet: run "
        "python -m jobs.annotate --tasks search (or jobs.nightly with search in annotate.tasks) first"
    )


def lake_vectors(cfg: Config, manifest: Manifest) -> tuple[np.ndarray, np.ndarray]:
    """The image ids (str [M]) and vectors (float32 [M, dim]) the model of ``manifest`` wrote to ``embeddings``,
    read without Spark.

    Raises:
        SearchError: the lake has none yet (the annotate task has not run with this model).
    """
    where = (pc.field("model") == manifest.name) & (pc.field("model_version") == manifest.version)
    dataset = table_dataset(cfg, EMBEDDINGS)
    rows = None if dataset is None else dataset.to_table(columns=["image_id", "vector"], filter=where)
    rows = None if rows is None else rows.filter(pc.is_valid(rows["vector"]))
    if rows is None or rows.num_rows == 0:
        raise no_vectors(manifest)
    vectors = np.asarray(rows["vector"].combine_chunks().flatten(), np.float32).reshape(rows.num_rows, -1)
    return np.asarray(rows["image_id"].to_pylist(), dtype=object), vectors


def best_k(queries: np.ndarray, ids: np.ndarray, vectors: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
    """Each query's ``k`` best images by cosine, best first, ties by image id.

    Args:
        queries: float32 [Q, D]; ids: str [M]; vectors: float32 [M, D]; all vectors unit length.

    Returns:
        per query, up to ``k`` (image_id, cosine) pairs.
    """
    kept_ids, kept_scores = [np.empty((len(queries), 0), object)], [np.empty((len(queries), 0), np.float32)]
    for start in range(0, len(ids), SCORE_BLOCK):
        scores = queries @ vectors[start : start + SCORE_BLOCK].T
        top = min(k, scores.shape[1])
        part = np.argpartition(-scores, top - 1, axis=1)[:, :top]
        kept_ids.append(ids[start : start + SCORE_BLOCK][part])
        kept_scores.append(np.take_along_axis(scores, part, axis=1))
    all_ids, all_scores = np.concatenate(kept_ids, axis=1), np.concatenate(kept_scores, axis=1)
    results = []
    for row_ids, row_scores in zip(all_ids, all_scores, strict=True):
        order = np.lexsort((row_ids.astype(str), -row_scores))[:k]
        results.append([(str(row_ids[i]), float(row_scores[i])) for i in order])
    return results


def search_text(cfg: Config, text: str, k: int) -> list[Hit]:
    """The ``k`` lake images whose vectors are nearest the query's, best first (cosine, no Spark): of every image,
    or with ``index.search.method: lsh`` of those in the buckets the query probes and those not bucketed yet."""
    vectors, manifest = text_vectors(cfg, [text])
    ids, images = lake_vectors(cfg, manifest)
    params = search_params(cfg, manifest)
    if params is not None:
        keep = probed_images(cfg, params, vectors[0], ids)
        ids, images = ids[keep], images[keep]
    return [Hit(rank, image_id, score) for rank, (image_id, score) in enumerate(best_k(vectors, ids, images, k)[0], 1)]


def probed_images(cfg: Config, params: SimHashParams, query: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """bool [M]: which of the images ``ids`` [M] a query [dim] scores: those in a bucket it probes, and those
    without buckets (embedded since the last ``jobs.index``), read from ``lsh_buckets`` without Spark."""
    probes = simhash_probe_codes(query[None], hyperplanes(params), params.bands, params.rows, cfg.index.search.probes)
    wanted = {(band, code_key(code, params.rows)) for band, codes in enumerate(probes[0]) for code in codes}
    scheme = (pc.field("kind") == "simhash") & (pc.field("params_id") == params.params_id)
    keys = pa.array(sorted({key for _, key in wanted}), pa.binary())
    hits = read(cfg, LSH_BUCKETS, scheme & pc.field("key").isin(keys), ["image_id", "band", "key"])
    hits = hits[np.asarray([(b, key) in wanted for b, key in zip(hits["band"], hits["key"], strict=True)], bool)]
    bucketed = read(cfg, LSH_BUCKETS, scheme & (pc.field("band") == 0), ["image_id"])["image_id"]
    names = pd.Index(ids)
    unbucketed = ~names.isin(bucketed)
    keep = names.isin(hits["image_id"]) | unbucketed
    log.info("search: %d of %d images scored (%d in the %d probed buckets, %d not bucketed yet)", keep.sum(),
             len(ids), hits["image_id"].nunique(), len(wanted), unbucketed.sum())  # fmt: skip
    return keep


def with_uris(cfg: Config, hits: Sequence[Hit]) -> list[dict]:
    """The JSON records of ``hits``: rank, image_id, the uri the image was ingested from, and score."""
    uris = uris_of(cfg, {h.image_id for h in hits})
    return [{"rank": h.rank, "image_id": h.image_id, "uri": uris.get(h.image_id), "score": round(h.score, 4)}
            for h in hits]  # fmt: skip


_PARTIAL = StructType(
    [
        StructField("query_id", StringType(), False),
        StructField("image_id", StringType(), False),
        StructField("score", FloatType(), False),
    ]  # fmt: skip
)


def transform_search_results(
    vectors: DataFrame, queries: pd.DataFrame, query_matrix: np.ndarray, k: int, model: Manifest,
    searched_at: datetime, lsh: tuple[SimHashParams, int] | None = None,
) -> DataFrame:  # fmt: skip
    """search_results rows: each query's ``k`` best images of ``vectors``, ranked from 1.

    Args:
        vectors: (image_id, vector) rows of the model's embeddings.
        queries: (query_id, query) of Q distinct queries; query_matrix: their vectors float32 [Q, dim], in order.
        model: the text-image model that made both sides.
        lsh: (SimHash scheme, probes): score a query only against the images that share a bucket it probes.
    """
    ids = queries["query_id"].to_numpy()
    probe_table = None
    if lsh is not None:
        params, probes = lsh
        planes = hyperplanes(params)
        probe_table = ProbeTable.build(simhash_probe_codes(query_matrix, planes, params.bands, params.rows, probes))

    def partial_best(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for frame in frames:
            frame = frame.dropna(subset=["vector"])
            if frame.empty:
                continue
            images = np.stack(frame["vector"].to_numpy()).astype(np.float32)
            image_ids = frame["image_id"].to_numpy(dtype=object)
            if probe_table is None:
                best = best_k(query_matrix, image_ids, images, k)
            else:
                codes = simhash_codes(images, planes, params.bands, params.rows)
                best = probed_best_k(probe_table, query_matrix, image_ids, images, codes, k)
            yield pd.DataFrame(
                [(q, image_id, score) for q, hits in zip(ids, best, strict=True) for image_id, score in hits],
                columns=["query_id", "image_id", "score"],
            )

    spark = vectors.sparkSession
    best = vectors.select("image_id", "vector").mapInPandas(partial_best, _PARTIAL)
    ranked = best.withColumn(
        "rank", F.row_number().over(Window.partitionBy("query_id").orderBy(F.desc("score"), "image_id"))
    ).where(F.col("rank") <= k)
    texts = spark.createDataFrame(queries[["query_id", "query"]])
    return ranked.join(F.broadcast(texts), "query_id").select(
        "query_id", "query", F.col("rank").cast("int"), "image_id", "score",
        F.lit(searched_at).alias("searched_at"), F.lit(model.name).alias("model"),
        F.lit(model.version).alias("model_version"),
    )  # fmt: skip


def verify(cfg: Config, first: str, second: str, threshold: float | None = None) -> dict:
    """Whether two images show the same thing: the cosine of their vectors by the configured embedder
    (``annotate.models.embed``) against the threshold its training chose on held-out pairs for a false-accept
    rate of ``models.embedder_training.VERIFY_FAR`` (or ``threshold``). Each image is a file, or the id of a lake
    image (whose stored vector is used).

    Returns:
        {"same", "score", "threshold", "false_accept_rate" (None for a given threshold), "model"}.

    Raises:
        SearchError: an image that is neither a file nor a lake image with a vector; a model without a threshold.
    """
    manifest, weights = configured_entry(cfg, "embed")
    if threshold is None:
        threshold = next((manifest.metrics[f"{part}_verify_threshold"] for part in ("eval", "holdout")
                          if f"{part}_verify_threshold" in manifest.metrics), None)  # fmt: skip
        if threshold is None:
            raise SearchError(
                f"the embedder {manifest.name} {manifest.version} has no verification threshold (its training chose "
                "none on held-out pairs): give --threshold, or use an embedder trained by jobs.train --model embedder"
            )
        rate = VERIFY_FAR
    else:
        rate = None
    predictor = None
    vectors = []
    for image in (first, second):
        if Path(image).is_file():
            predictor = predictor or EmbedPredictor(model_from_bytes(manifest, weights), manifest,
                                                    torch.device("cpu"), precision=cfg.annotate.precision)  # fmt: skip
            found = predictor.infer([predictor.prepare(Path(image).read_bytes())])[0]["vector"]
        else:
            found = _stored_vector(cfg, manifest, image)
        if found is None:
            raise SearchError(f"cannot embed {image}: not a readable image file, nor a lake image with a vector")
        vectors.append(np.asarray(found, np.float64))
    score = float(vectors[0] @ vectors[1])
    return {"same": score >= threshold, "score": round(score, 4), "threshold": round(float(threshold), 4),
            "false_accept_rate": rate, "model": f"{manifest.name}:{manifest.version}"}  # fmt: skip


def _stored_vector(cfg: Config, manifest: Manifest, image_id: str) -> np.ndarray | None:
    where = ((pc.field("image_id") == image_id) & (pc.field("model") == manifest.name)
             & (pc.field("model_version") == manifest.version) & pc.field("vector").is_valid())  # fmt: skip
    rows = read(cfg, EMBEDDINGS, where, ["vector"])
    return np.asarray(rows["vector"].iloc[0], np.float32) if len(rows) else None
