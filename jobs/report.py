"""The nightly report: one HTML page with PNG figures: ``python -m jobs.report --out DIR``.

It shows sample images with their detection boxes, segmentation overlays, labels and captions; near-duplicate
groups side by side; the most similar images of a few images; a 2-D map (PCA) of the embeddings coloured by label;
and the latest run's counts, errors and timings per stage. It reads the rows the current configuration's models
and index parameters made. Open ``DIR/index.html`` in a browser; the folder can be copied anywhere.

A class has one colour on the whole page (boxes, masks, legends, map), set by its name among the classes the
configured models know, so it is the same in the report of every lake these models annotated.
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
