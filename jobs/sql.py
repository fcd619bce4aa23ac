"""Run Spark SQL against the lake's catalog and print the result: ``python -m jobs.sql "QUERY" [--lake PATH]``.

The lake database is the current one, so tables are named bare (``SELECT count(*) FROM images``) or
qualified (``lake.images``). Several queries run in order in one Spark session (one start instead of one each),
each result after a ``-- QUERY`` line.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from pyspark.errors import AnalysisException, ParseException

from lakelens.cli import config_from_args, job_parser, one_line, run_job
from lakelens.errors import InputError
from lakelens.spark import build_session


def main(argv: Sequence[str] | None = None) -> int:
    parser = job_parser("jobs.sql", __doc__.splitlines()[0])
    parser.add_argument("query", nargs="+", help="Spark SQL statements, one per argument")
    parser.add_argument("--limit", type=int, default=100, help="rows to print (default 100)")
    parser.add_argument("--truncate", type=int, default=60, help="cut cells to this many characters (0: never)")
    args = parser.parse_args(argv)
    cfg = config_from_args(args, lake_must_exist=True)
    spark = build_session(cfg)
    spark.catalog.setCurrentDatabase(cfg.lake.database)
    for i, query in enumerate(args.query):
        if len(args.query) > 1:
            print(f"-- {query}", flush=True)
        try:
            spark.sql(query).show(n=args.limit, truncate=args.truncate or False)
        except AnalysisException as exc:  # the query's own fault: say where, without the JVM's stack
            raise query_error(exc, i, len(args.query)) from None
    return 0


def query_error(exc: AnalysisException, index: int, count: int) -> InputError:
    """A bad query's error in one line (which query, Spark's error class and message); a syntax error's pointer
    into the query (``== SQL ==`` and a caret line) is printed first."""
    text = str(exc)
    if isinstance(exc, ParseException) and "== SQL ==" in text:
        print(text[text.index("== SQL ==") :].rstrip(), file=sys.stderr)
    which = f"query {index + 1} of {count}: " if count > 1 else ""
    return InputError(which + one_line(exc), label=type(exc).__name__)


if __name__ == "__main__":
    run_job(main)
