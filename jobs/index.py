"""Near-duplicate, similar-image and search index: ``python -m jobs.index [--full]``.

What it does, and its tables, are described in ``stages.index``, which it runs.
"""

from __future__ import annotations

from collections.abc import Sequence

from lakelens.cli import config_from_args, job_parser, run_job
from lakelens.spark import build_session
from models.registry import RegistryError
from stages.index import buckets_for_search, index_near_duplicates, index_search, index_similar


def main(argv: Sequence[str] | None = None) -> int:
    parser = job_parser("jobs.index", __doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="rebuild the current parameters' rows from scratch")
    args = parser.parse_args(argv)
    cfg = config_from_args(args)
    spark = build_session(cfg)
    print(index_near_duplicates(spark, cfg, args.full).summary())
    if buckets_for_search(cfg):
        searched = index_search(spark, cfg, args.full)
        print(searched.summary() if searched else "search buckets: skipped (no image vectors from the text model yet: "
              "run jobs.annotate --tasks search)")  # fmt: skip
    try:
        similar = index_similar(spark, cfg, args.full)
    except RegistryError as exc:  # the near-duplicates need no model; the similar lists need an embedder
        print(
            f"similar: skipped ({exc}; the near-duplicates are done: for similar images install an embedder, "
            "python -m jobs.models install embedder, or name one with --set annotate.models.embed=NAME)"
        )
        return 0
    print(similar.summary() if similar else "similar: skipped (no embeddings yet: run jobs.annotate --tasks embed)")
    return 0


if __name__ == "__main__":
    run_job(main)
