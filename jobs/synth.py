"""Synthetic scenes with ground truth: ``python -m jobs.synth --out DIR --n N --seed S``.

Writes DIR/images/*.jpg|png and DIR/ground_truth.parquet (labels, boxes, masks, captions, planted near-duplicate
and similar groups). Deterministic per seed; a re-run with the same parameters leaves the files untouched.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from lakelens.cli import config_from_args, job_parser, run_job
from lakelens.scenes import generate_scenes


def main(argv: Sequence[str] | None = None) -> int:
    parser = job_parser("jobs.synth", __doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output folder (created if missing)")
    parser.add_argument("--n", type=int, default=2000, help="number of image files in all (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--size", type=int, default=128, help="side of the rendered scenes in pixels (default 128)")
    parser.add_argument("--workers", type=int, help="processes (default: one per core)")
    parser.add_argument(
        "--dup-fraction", type=float, default=0.12, help="share of files that are near-duplicate copies (default 0.12)"
    )
    parser.add_argument(
        "--similar-fraction",
        type=float,
        default=0.08,
        help="share of files that are relayouts: the same objects on a new layout (default 0.08; training data for "
        "the embedder wants many)",
    )
    args = parser.parse_args(argv)
    config_from_args(args)  # a bad --config/--set fails here like in every other job
    try:
        summary = generate_scenes(
            args.out,
            n=args.n,
            seed=args.seed,
            size=args.size,
            workers=args.workers,
            dup_fraction=args.dup_fraction,
            similar_fraction=args.similar_fraction,
        )
    except ValueError as exc:  # a bad --n, --size or fraction
        parser.error(str(exc))
    print(json.dumps({"out": args.out, **summary}))
    return 0


if __name__ == "__main__":
    run_job(main)
