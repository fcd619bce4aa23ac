"""Near-duplicates and most similar images of one image, from the lake's files without Spark (``jobs.query``).

As JSON lines ``{"image_id", "uri", "relation", "score"}``: near-duplicates first (``score`` = estimated Jaccard),
then the ``k`` most similar (``score`` = cosine). ``--id`` reads the index's verified pairs and top-k lists of an
image in the lake. ``--image`` decodes a file, hashes and embeds it, and looks up only the buckets its keys fall in,
then verifies those candidates exactly; its similar images are ranked against every vector of the embedder
(``index.similar.method: exact``) or against the members of its SimHash buckets (``lsh``); a file whose very bytes
are a lake image names that image first (``relation`` ``identical``). No Spark session: the
lake's Parquet files are read directly (an answer takes about 4 s on the embedded default, most of it importing torch
and pyspark).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import torch

from lakelens.config import Config
from lakelens.lake import registry_root, table_dataset
from lakelens.lsh import SimHashParams, hyperplanes, jaccard, simhash_band_keys
from lakelens.schemas import EMBEDDINGS, IMAGES, LSH_BUCKETS, NEAR_DUP_PAIRS, SIGNATURES, SIMILAR, TableSpec
from models.registry import model_from_bytes, read_entry
from stages.annotate import configured_manifest
from stages.index import near_dup_params, similar_params
from udfs.embed import EmbedPredictor
from udfs.signatures import minhash_frame


class QueryError(ValueError):
    """The query cannot be answered: an unknown id, an unreadable image, an index not built yet."""


@dataclass(frozen=True)
class Match:
    image_id: str
    relation: str  # identical, near_duplicate or similar
    score: float


def count(cfg: Config, spec: TableSpec, where: pc.Expression) -> int:
    """How many rows of a lake table ``where`` keeps (0 if the table has no files)."""
    dataset = table_dataset(cfg, spec)
    return 0 if dataset is None else dataset.count_rows(filter=where)


def read(cfg: Config, spec: TableSpec, where: pc.Expression, columns: list[str]) -> pd.DataFrame:
    """The rows of a lake table that ``where`` keeps (empty if the table has no files)."""
    dataset = table_dataset(cfg, spec)
    if dataset is None:
        return pd.DataFrame(columns=columns)
    return dataset.to_table(columns=columns, filter=where).to_pandas()


def matches_of_id(cfg: Config, image_id: str, k: int) -> list[Match]:
    """The index's verified near-duplicates and top-k list of an image already in the lake."""
    minhash_id = near_dup_params(cfg).params_id
    signed = read(cfg, SIGNATURES, (pc.field("image_id") == image_id) & (pc.field("params_id") == minhash_id),
                  ["image_id", "error"])  # fmt: skip
    if signed.empty:
        known = read(cfg, IMAGES, pc.field("image_id") == image_id, ["image_id"])
        if known.empty:
            raise QueryError(f"no image with id {image_id} in the lake")
        raise QueryError(f"image {image_id} is not indexed yet: run python -m jobs.index")
    either = (pc.field("image_id_a") == image_id) | (pc.field("image_id_b") == image_id)
    pairs = read(cfg, NEAR_DUP_PAIRS, either & (pc.field("params_id") == minhash_id),
                 ["image_id_a", "image_id_b", "similarity"])  # fmt: skip
    near = [Match(b if a == image_id else a, "near_duplicate", float(s)) for a, b, s in pairs.itertuples(index=False)]
    lists = read(cfg, SIMILAR, pc.field("image_id") == image_id, ["neighbor_id", "rank", "cosine", "params_id"])
    lists = lists[lists["params_id"] == similar_params(cfg, configured_manifest(cfg, "embed")).params_id]
    lists = lists.sort_values("rank").head(k)
    similar = [Match(n, "similar", float(c)) for n, c in zip(lists["neighbor_id"], lists["cosine"], strict=True)]
    return _near_first(near) + similar


def matches_of_file(cfg: Config, data: bytes, k: int) -> list[Match]:
    """Near-duplicates and top-k similar images of an image file, through its buckets; first, where the lake holds
    the very same bytes, that image (relation ``identical``, score 1.0)."""
    own_id = hashlib.sha256(data).hexdigest()
    params = near_dup_params(cfg)
    if not count(cfg, SIGNATURES, pc.field("params_id") == params.params_id):
        raise QueryError(
            f"the lake has no near-duplicate index under the configured parameters ({params.params_id}) yet: run "
            "python -m jobs.index (or jobs.nightly) first"
        )
    frame = pd.DataFrame({"image_id": [own_id], "bytes": [data], "error": [None]})
    signed = minhash_frame(frame, params, cfg.ingest.max_pixels).iloc[0]
    if signed["error"] is not None:
        raise QueryError(f"cannot read the image: {signed['error']}")
    candidates = _bucket_members(cfg, "minhash", params.params_id, signed["keys"]) - {own_id}
    near = []
    if candidates:
        where = pc.field("image_id").isin(sorted(candidates)) & (pc.field("params_id") == params.params_id)
        theirs = read(cfg, SIGNATURES, where, ["image_id", "minhash"]).dropna(subset=["minhash"])
        mine = np.asarray(signed["minhash"])
        for image_id, other in zip(theirs["image_id"], theirs["minhash"], strict=True):
            score = jaccard(mine, np.asarray(other))
            if score >= cfg.index.near_dup.threshold:
                near.append(Match(image_id, "near_duplicate", score))
    similar = _similar_of_file(cfg, own_id, data, k) if "embed" in cfg.annotate.tasks else []
    identical = [Match(own_id, "identical", 1.0)] if count(cfg, IMAGES, pc.field("image_id") == own_id) else []
    return identical + _near_first(near) + similar


def _similar_of_file(cfg: Config, own_id: str, data: bytes, k: int) -> list[Match]:
    manifest = configured_manifest(cfg, "embed")
    where = (pc.field("model") == manifest.name) & (pc.field("model_version") == manifest.version)
    if not count(cfg, EMBEDDINGS, where & pc.field("vector").is_valid()):
        raise QueryError(
            f"the lake has no embeddings from the configured embedder {manifest.name} {manifest.version} yet: run "
            "python -m jobs.annotate --tasks embed (or jobs.nightly) first"
        )
    _, weights = read_entry(registry_root(cfg), manifest.name, manifest.version)
    # The lake's own precision: a file's vector is made as its images' were.
    model = model_from_bytes(manifest, weights).eval()
    predictor = EmbedPredictor(model, manifest, torch.device("cpu"), 1, precision=cfg.annotate.precision)
    vector = predictor.infer([predictor.prepare(data)])[0]["vector"]
    params = similar_params(cfg, manifest)
    if isinstance(params, SimHashParams):
        keys = simhash_band_keys(vector[None, :], hyperplanes(params), params.bands, params.rows)[0]
        candidates = _bucket_members(cfg, "simhash", params.params_id, keys) - {own_id}
        if not candidates:
            return []
        where = where & pc.field("image_id").isin(sorted(candidates))
    # Exact: every vector of the embedder (64 floats an image: a 100,000-image lake is a 26 MB read).
    theirs = read(cfg, EMBEDDINGS, where, ["image_id", "vector"]).dropna(subset=["vector"])
    theirs = theirs[theirs["image_id"] != own_id]
    if theirs.empty:
        return []
    ids = theirs["image_id"].to_numpy()
    cosines = (np.stack(theirs["vector"].to_numpy()).astype(np.float64) @ vector.astype(np.float64)).astype(np.float32)
    order = np.lexsort((ids, -cosines))[:k]  # by cosine, ties by id: as the similar table ranks
    return [Match(ids[i], "similar", float(cosines[i])) for i in order]


def _bucket_members(cfg: Config, kind: str, params_id: str, keys: Sequence[bytes]) -> set[str]:
    """Images sharing at least one (band, key) with ``keys``: a filtered read of those buckets only."""
    where = (pc.field("kind") == kind) & (pc.field("params_id") == params_id) & pc.field("key").isin(list(keys))
    rows = read(cfg, LSH_BUCKETS, where, ["image_id", "band", "key"])
    wanted = set(enumerate(keys))
    return {i for i, band, key in rows.itertuples(index=False) if (band, key) in wanted}


def _near_first(near: list[Match]) -> list[Match]:
    return sorted(near, key=lambda m: (-m.score, m.image_id))


def uris_of(cfg: Config, image_ids: set[str]) -> dict[str, str]:
    """The uri each of ``image_ids`` was ingested from (ids the lake lacks are left out)."""
    ids = sorted(image_ids)
    uris = read(cfg, IMAGES, pc.field("image_id").isin(ids), ["image_id", "uri"]) if ids else pd.DataFrame()
    return dict(zip(uris.get("image_id", []), uris.get("uri", []), strict=True))


def with_uris(cfg: Config, matches: list[Match]) -> list[dict]:
    """The JSON records of ``matches``, each with the uri its image was ingested from."""
    where = uris_of(cfg, {m.image_id for m in matches})
    return [
        {"image_id": m.image_id, "uri": where.get(m.image_id), "relation": m.relation, "score": round(m.score, 4)}
        for m in matches
    ]
