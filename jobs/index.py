"""Near-duplicate and similar-image index: ``python -m jobs.index [--full]``.

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

from collections.abc import Sequence

from lakelens.cli import config_from_args, job_parser, run_job
from lakelens.spark import build_session
from models.registry import RegistryError
from stages.index import index_near_duplicates, index_similar


def main(argv: Sequence[str] | None = None) -> int:
    parser = job_parser("jobs.index", __doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="rebuild the current parameters' rows from scratch")
    args = parser.parse_args(argv)
    cfg = config_from_args(args)
    spark = build_session(cfg)
    print(index_near_duplicates(spark, cfg, args.full).summary())
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
