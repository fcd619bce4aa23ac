"""Synthetic-scene generation speed: ``python -m bench.synth_speed --n 10000 [--workers 2]``.

Generates into a fresh folder (never the idempotent skip) and prints seconds and scenes/s. The issue's goal:
10,000 scenes in under 2 minutes on a 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile

from lakelens.scenes import generate_scenes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    args = parser.parse_args()
    out = tempfile.mkdtemp(prefix="lakelens-synth-")
    try:
        summary = generate_scenes(out, n=args.n, seed=args.seed, size=args.size, workers=args.workers)
        print(
            f"synth: {summary['n_images']} scenes ({summary['n_base']} base, {summary['n_copies']} near-duplicate "
            f"copies, {summary['n_relayouts']} relayouts) at {args.size}px on {summary['workers']} workers: "
            f"{summary['seconds']:.1f}s, {summary['n_images'] / summary['seconds']:.0f} scenes/s"
        )
    finally:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
