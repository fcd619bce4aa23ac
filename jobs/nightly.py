"""The nightly refresh in one Spark application: ingest, annotate, index: ``python -m jobs.nightly --source SRC``.

What it does, and its tables, are described in ``stages.nightly``, which it runs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import date

from lakelens.cli import config_from_args, job_parser, run_job
from lakelens.sources import add_source_options, open_source
from lakelens.spark import build_session
from stages.nightly import nightly


def main(argv: Sequence[str] | None = None) -> int:
    parser = job_parser("jobs.nightly", __doc__.splitlines()[0])
    add_source_options(parser)
    parser.add_argument("--date", type=date.fromisoformat, help="ingest_date of the new images (default: today, UTC)")
    args = parser.parse_args(argv)
    cfg = config_from_args(args)
    source = open_source(args.source, args.format, args.bytes_column)
    spark = build_session(cfg)
    started = time.monotonic()
    run_id, ran = nightly(
        spark, cfg, source, on_stage=lambda stage, result: print(result.summary, flush=True), ingest_date=args.date
    )
    print(f"nightly: run {run_id} done in {time.monotonic() - started:.1f}s; stages run: {', '.join(ran) or 'none'}")
    return 0


if __name__ == "__main__":
    run_job(main)
