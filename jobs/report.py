"""The nightly report: one HTML page with PNG figures: ``python -m jobs.report --out DIR``.

What it does, and its tables, are described in ``stages.report``, which it runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lakelens.cli import config_from_args, job_parser, run_job
from lakelens.spark import build_session
from stages.report import write_report


def main(argv: Sequence[str] | None = None) -> int:
    parser = job_parser("jobs.report", __doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for index.html and its figures")
    parser.add_argument("--samples", type=int, default=8, help="sample images shown with their annotations")
    parser.add_argument("--groups", type=int, default=6, help="near-duplicate groups shown")
    args = parser.parse_args(argv)
    cfg = config_from_args(args, lake_must_exist=True)
    spark = build_session(cfg)
    print(f"report: {write_report(spark, cfg, Path(args.out).resolve(), args.samples, args.groups)}")
    return 0


if __name__ == "__main__":
    run_job(main)
