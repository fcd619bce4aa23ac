"""The nightly refresh in one Spark application: ingest, annotate, index: ``python -m jobs.nightly --source SRC``.

``SRC`` is what ``jobs.ingest`` takes: a folder of images, a list of paths, or a Parquet table. Every stage is
incremental (only new images are read, annotated and indexed) and records a row in the ``runs`` table. A stage
starts once the stages whose tables it reads are done, so annotate and the near-duplicate index run side by side
(``nightly.parallel_stages``). Started again after a failure, the job resumes that run at the stages not done; a
finished run is followed by a new one, which finds nothing new and changes no table.
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
