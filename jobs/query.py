"""Near-duplicates and most similar images of one image: ``python -m jobs.query (--image FILE | --id ID) [--k 10]``.

Prints JSON lines ``{"image_id", "uri", "relation", "score"}``: near-duplicates first (``score`` = estimated Jaccard),
then the ``k`` most similar (``score`` = cosine). ``--id`` reads the index's verified pairs and top-k lists of an
image in the lake. ``--image`` decodes a file, hashes and embeds it, and looks up only the buckets its keys fall in,
then verifies those candidates exactly; its similar images are ranked against every vector of the embedder
(``index.similar.method: exact``) or against the members of its SimHash buckets (``lsh``); a file whose very bytes
are a lake image names that image first (``relation`` ``identical``). No Spark session: the
lake's Parquet files are read directly (an answer takes about 4 s on the embedded default, most of it importing torch
and pyspark).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from lakelens.cli import config_from_args, job_parser, run_job
from lakelens.imaging import ImageDecodeError
from stages.query import QueryError, matches_of_file, matches_of_id, with_uris


def main(argv: Sequence[str] | None = None) -> int:
    parser = job_parser("jobs.query", __doc__.splitlines()[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--image", help="an image file (need not be in the lake)")
    which.add_argument("--id", help="the image_id of an image in the lake")
    parser.add_argument("--k", type=int, default=None, help="similar images to list (default: index.similar.k)")
    args = parser.parse_args(argv)
    cfg = config_from_args(args, lake_must_exist=True)
    k = args.k or cfg.index.similar.k
    try:
        if args.id:
            matches = matches_of_id(cfg, args.id, k)
        else:
            matches = matches_of_file(cfg, Path(args.image).read_bytes(), k)
    except (QueryError, ImageDecodeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for record in with_uris(cfg, matches):
        print(json.dumps(record))
    return 0


if __name__ == "__main__":
    run_job(main)
