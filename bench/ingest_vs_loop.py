"""Ingest throughput: Spark ingest against a plain single-process Python loop over the same files.

    python -m bench.ingest_vs_loop --n 10000 [--size 128] [--work /tmp/lakelens-bench] [--master local[2]]

Both sides read, SHA-256 and decode-check every file with the same functions; Spark also writes the images
and image_uris tables. Both run on the same files in one process, one after the other; the ratio is what to
compare (this machine is noisy). Spark's time is the ``ingest`` call on a started session (the session start
is reported apart): "cold" is the first ingest of the session, which also starts the Python workers and warms
the JVM; "warm" ingests the same files again into a second, empty database of the same session, as a long
nightly application would for its later batches.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import time
from pathlib import Path

from lakelens.config import load_config
from lakelens.files import list_files, read_bytes
from lakelens.ingest_rows import record
from lakelens.scenes import generate_scenes


def plain_loop(folder: Path, patterns: tuple[str, ...], max_bytes: int, max_pixels: int) -> tuple[int, int, float]:
    """Read, hash and decode-check every file in one Python loop: (files, errors, seconds)."""
    start = time.perf_counter()
    files = list_files(str(folder), patterns)
    errors = 0
    for f in files:
        data, error = read_bytes(f.uri, max_bytes)
        errors += record(f.uri, data, error, max_pixels)["error"] is not None
    return len(files), errors, time.perf_counter() - start


def read_stage_seconds(spark, cfg, folder: Path) -> float:
    """Seconds of the executors' read-hash-check stage alone, as ingest plans it (the part that scales)."""
    from pyspark.sql import functions as F

    from lakelens.sources import extract_candidates, read_partitions
    from stages.ingest import transform_read

    files, n = extract_candidates(spark, cfg, str(folder), "folder")
    files = files.persist()
    files.count()
    start = time.perf_counter()
    transform_read(files, read_partitions(spark, n, cfg), cfg.ingest).agg(F.count("error")).first()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=128, help="side of the synthetic scenes in pixels")
    parser.add_argument("--work", default="/tmp/lakelens-bench")
    parser.add_argument("--master", default="local[2]")
    args = parser.parse_args()

    work = Path(args.work)
    scenes = work / f"scenes-n{args.n}-seed{args.seed}-size{args.size}"
    made = generate_scenes(scenes, n=args.n, seed=args.seed, size=args.size)
    print(f"scenes: {made['n_images']} files in {scenes} ({'reused' if made.get('skipped') else 'made'})")
    lake = work / "lake"
    shutil.rmtree(lake, ignore_errors=True)
    cfg = load_config(overrides=[f"lake.root={lake}", f"spark.master={args.master}"])
    folder = scenes / "images"

    n, errors, loop_s = plain_loop(folder, cfg.ingest.patterns, cfg.ingest.max_bytes, cfg.ingest.max_pixels)
    print(f"loop:  {n} files, {errors} errors, {loop_s:.1f}s, {n / loop_s:.0f} images/s (1 process)")

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from lakelens.spark import build_session
    from stages.ingest import ingest

    start = time.perf_counter()
    spark = build_session(cfg)
    session_s = time.perf_counter() - start
    print(f"spark: session start {session_s:.1f}s (not counted); master {spark.sparkContext.master}")
    cold = ingest(spark, cfg, str(folder))
    print(f"spark cold: {cold.summary()}")
    warm = ingest(
        spark, dataclasses.replace(cfg, lake=dataclasses.replace(cfg.lake, database="bench_warm")), str(folder)
    )
    print(f"spark warm: {warm.summary()}")
    stage_s = read_stage_seconds(spark, cfg, folder)
    print(f"spark read stage alone (warm, no cache, no table writes): {stage_s:.1f}s, {n / stage_s:.0f} images/s")
    loop_rate = n / loop_s
    print(
        f"ratio spark/loop throughput: cold {cold.read / cold.seconds / loop_rate:.2f}, "
        f"warm {warm.read / warm.seconds / loop_rate:.2f}, read stage {n / stage_s / loop_rate:.2f}"
    )
    spark.stop()


if __name__ == "__main__":
    main()
