"""Ingest images into the lake: ``python -m jobs.ingest --source DIR_OR_LIST_OR_PARQUET``.

What it does, and its tables, are described in ``stages.ingest``, which it runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from lakelens.cli import config_from_args, job_parser, run_job
from lakelens.sources import add_source_options, open_source
from lakelens.spark import build_session
from stages.ingest import ingest


def main(argv: Sequence[str] | None = None) -> int:
    parser = job_parser("jobs.ingest", __doc__.splitlines()[0])
    add_source_options(parser)
    parser.add_argument(
        "--glob",
        action="append",
        help="file-name pattern for folders, repeatable (default: ingest.patterns, the common image extensions)",
    )
    parser.add_argument("--date", type=date.fromisoformat, help="ingest_date partition (default: today, UTC)")
    args = parser.parse_args(argv)
    if args.glob:
        args.overrides.append(f"ingest.patterns={args.glob}")
    cfg = config_from_args(args)
    source = open_source(args.source, args.format, args.bytes_column)
    spark = build_session(cfg)
    counts = ingest(spark, cfg, source, args.date)
    print(counts.summary())
    return 0


if __name__ == "__main__":
    run_job(main)
