"""Annotate images with the registry's models: ``python -m jobs.annotate [--tasks classify,detect,...]``.

What it does, and its tables, are described in ``stages.annotate``, which it runs.
"""

from __future__ import annotations

from collections.abc import Sequence

from lakelens.cli import config_from_args, job_parser, run_job
from lakelens.config import ANNOTATE_TASKS
from lakelens.spark import build_session
from stages.annotate import annotate, install_missing_models


def main(argv: Sequence[str] | None = None) -> int:
    parser = job_parser("jobs.annotate", __doc__.splitlines()[0])
    parser.add_argument(
        "--tasks", help=f"comma-separated, of {','.join(ANNOTATE_TASKS)} (default: annotate.tasks, all of them)"
    )
    args = parser.parse_args(argv)
    if args.tasks:
        args.overrides.append(f"annotate.tasks=[{args.tasks}]")
    cfg = config_from_args(args)
    install_missing_models(cfg, cfg.annotate.tasks)
    spark = build_session(cfg)
    print(annotate(spark, cfg, cfg.annotate.tasks).summary())
    return 0


if __name__ == "__main__":
    run_job(main)
