"""Search the lake's images by text: ``python -m jobs.search --text "QUERY" [--k 10]`` (JSON lines, best first) or
``--queries FILE_OR_TABLE`` (Spark; writes the ``search_results`` table); or ``--verify IMAGE_A IMAGE_B``: same
or different.

The space is that of the text-image model the ``search`` task runs (``annotate.models.search``), whose image vectors
the annotate task wrote to ``embeddings`` (``stages.search``); every vector is scored, or with ``index.search.method:
lsh`` those in the SimHash buckets the query probes. A query that names nothing in the lake still gets its nearest
images; a query with no words is refused.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakelens.cli import config_from_args, job_parser, run_job
from lakelens.config import Config
from lakelens.lake import read_table, replace_partition
from lakelens.schemas import EMBEDDINGS, SEARCH_RESULTS
from lakelens.spark import job_session
from models.vocabulary import tokenize
from stages.index import search_params
from stages.search import (
    SearchError,
    no_vectors,
    query_id,
    search_text,
    text_vectors,
    transform_search_results,
    verify,
    with_uris,
)

log = logging.getLogger("lakelens.search")
_TABLE_NAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)?$")


def main(argv: Sequence[str] | None = None) -> int:
    parser = job_parser("jobs.search", __doc__.splitlines()[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--text", help="one query, e.g. 'a small green star above a blue circle'")
    which.add_argument(
        "--queries",
        metavar="FILE_OR_TABLE",
        help="many queries: a text file of one query a line (blank lines skipped), or a table of the lake database "
        "(or db.table) with a 'query' column",
    )
    which.add_argument(
        "--verify",
        nargs=2,
        metavar=("IMAGE_A", "IMAGE_B"),
        help="are these two images (files, or ids of lake images) of the same thing? By the configured embedder "
        "(annotate.models.embed) and the threshold its training chose on held-out pairs for 1 %% false accepts",
    )
    parser.add_argument("--k", type=int, default=10, help="images per query (default 10)")
    parser.add_argument("--threshold", type=float, help="--verify: the least cosine called the same, instead")
    args = parser.parse_args(argv)
    if args.k < 1:
        parser.error("--k must be at least 1")
    cfg = config_from_args(args, lake_must_exist=True)
    if args.verify:
        print(json.dumps(verify(cfg, *args.verify, threshold=args.threshold)))
        return 0
    if args.text is not None:
        for record in with_uris(cfg, search_text(cfg, args.text, args.k)):
            print(json.dumps(record))
        return 0
    with job_session(cfg) as spark:
        summary = search_batch(spark, cfg, args.queries, args.k)
    print(json.dumps(summary))
    return 0


def search_batch(spark: SparkSession, cfg: Config, source: str, k: int) -> dict:
    """Rank the lake's images for every query of ``source`` and replace the model version's ``search_results``."""
    started = time.monotonic()
    queries = read_queries(spark, cfg, source)
    matrix, manifest = text_vectors(cfg, list(queries["query"]))
    vectors = read_table(spark, cfg, EMBEDDINGS).where(
        (F.col("model") == manifest.name) & (F.col("model_version") == manifest.version) & F.col("vector").isNotNull()
    )
    images = vectors.count()
    if not images:
        raise no_vectors(manifest)
    searched_at = datetime.now(UTC).replace(microsecond=0, tzinfo=None)
    params = search_params(cfg, manifest)
    lsh = None if params is None else (params, cfg.index.search.probes)
    results = transform_search_results(vectors, queries, matrix, k, manifest, searched_at, lsh)
    replace_partition(results, cfg, SEARCH_RESULTS, model=manifest.name, model_version=manifest.version)
    seconds = time.monotonic() - started
    method = "exact" if params is None else params.params_id
    summary = {"queries": len(queries), "images": images, "k": k, "model": f"{manifest.name}:{manifest.version}",
               "method": method, "seconds": round(seconds, 1),
               "scores_per_s": round(len(queries) * images / seconds)}  # fmt: skip
    log.info("search (%s): %d queries x %d images in %.1f s (%.3g scores/s) -> %s", method, len(queries), images,
             seconds, summary["scores_per_s"], SEARCH_RESULTS.name)  # fmt: skip
    return summary


def read_queries(spark: SparkSession, cfg: Config, source: str) -> pd.DataFrame:
    """(query_id, query) of each distinct query of ``source``: a text file's non-blank lines, or a table's
    ``query`` column.

    Raises:
        SearchError: no queries, a query with no words (named by its line), or a table without ``query``.
    """
    path = Path(source)
    if path.is_file():
        lines = [(n, line.strip()) for n, line in enumerate(path.read_text().splitlines(), 1) if line.strip()]
        where = {text: f"line {n} of {source}" for n, text in reversed(lines)}
    else:
        name = source if "." in source else f"{cfg.lake.database}.{source}"
        if not _TABLE_NAME.match(source) or not spark.catalog.tableExists(name):
            raise SearchError(f"--queries {source}: no such file, nor a table {name}")
        table = spark.table(name)
        if "query" not in table.columns:
            raise SearchError(f"table {name} has no 'query' column (it has {', '.join(table.columns)})")
        texts = [r["query"] for r in table.select("query").where(F.col("query").isNotNull()).collect()]
        lines = [(0, t.strip()) for t in texts if t.strip()]
        where = {text: f"a row of {name}" for _, text in lines}
    texts = list(dict.fromkeys(text for _, text in lines))
    if not texts:
        raise SearchError(f"--queries {source} holds no queries")
    for text in texts:
        if not tokenize(text):
            raise SearchError(f"the query {text!r} ({where[text]}) has no words: give a description, or remove it")
    return pd.DataFrame({"query_id": [query_id(t) for t in texts], "query": texts})


if __name__ == "__main__":
    run_job(main)
