"""Run Spark SQL against the lake's catalog and print the result: ``python -m jobs.sql "QUERY" [--lake PATH]``.

The lake database is the current one, so tables are named bare (``SELECT count(*) FROM images``) or
qualified (``lake.images``). Several queries run in order in one Spark session (one start instead of one each),
each result after a ``-- QUERY`` line.
"""

from __future__ import annotations

from collections.abc import Sequence

from lakelens.cli import config_from_args, job_parser, run_job
from lakelens.spark import build_session


def main(argv: Sequence[str] | None = None) -> int:
    parser = job_parser("jobs.sql", __doc__.splitlines()[0])
    parser.add_argument("query", nargs="+", help="Spark SQL statements, one per argument")
    parser.add_argument("--limit", type=int, default=100, help="rows to print (default 100)")
    parser.add_argument("--truncate", type=int, default=60, help="cut cells to this many characters (0: never)")
    args = parser.parse_args(argv)
    cfg = config_from_args(args)
    spark = build_session(cfg)
    spark.catalog.setCurrentDatabase(cfg.lake.database)
    for query in args.query:
        if len(args.query) > 1:
            print(f"-- {query}")
        spark.sql(query).show(n=args.limit, truncate=args.truncate or False)
    return 0


if __name__ == "__main__":
    run_job(main)
