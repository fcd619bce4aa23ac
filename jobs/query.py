"""Near-duplicates and most similar images of one image: ``python -m jobs.query (--image FILE | --id ID) [--k 10]``.

What it does, and its tables, are described in ``stages.query``, which it runs.
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
