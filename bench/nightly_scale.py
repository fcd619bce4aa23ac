"""The nightly job on a lake of synthetic scenes: a full run, then an incremental run that adds new scenes.

    python -m bench.nightly_scale [--n 10000] [--add 1000] [--work /tmp/lakelens-nightly-bench] [--master local[*]]

Makes ``n + add`` scenes once (kept in ``--work``), links the first ``n`` into the source folder and runs the
nightly job on a new lake (every default task, the bundled models); then links the other ``add`` in and runs it
again, which reads, annotates and indexes only those; then once more with nothing new (what a night costs when
nothing comes). Prints each run's wall time and Spark job count and, per stage, its rows and images/s as the ``runs``
table recorded them, and the ratio of the incremental run to the full one (the goal is at most 0.20). The runs share
one Spark session, as a nightly application would; its start is reported apart. They are consecutive nights: each
ingests into the next day's ``ingest_date`` partition.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from jobs.nightly import nightly, stage_job_group, stages
from lakelens.config import load_config
from lakelens.lake import read_table, registry_root
from lakelens.scenes import generate_scenes
from lakelens.schemas import RUNS
from lakelens.spark import build_session
from models.registry import install_bundled


def link_files(files: list[Path], folder: Path) -> None:
    """Hard links (real files to the job's listing) of ``files`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        target = folder / f.name
        if not target.exists():
            os.link(f, target)


def stage_lines(spark, cfg, run_id: str) -> list[str]:
    runs = read_table(spark, cfg, RUNS).where(f"run_id = '{run_id}' AND stage <> 'nightly'").orderBy("started_at")
    lines = []
    for r in runs.collect():
        seconds = (r.ended_at - r.started_at).total_seconds()
        lines.append(
            f"  {r.stage:<20} {seconds:7.1f}s  rows in {r.rows_in:>6}  out {r.rows_out:>6}  errors {r.errors:>3}"
            f"  {r.images_per_s:8.1f} images/s"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10000, help="scenes in the full run")
    parser.add_argument("--add", type=int, default=1000, help="new scenes in the incremental run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default="/tmp/lakelens-nightly-bench")
    parser.add_argument("--master", default="local[*]")
    args = parser.parse_args()

    work = Path(args.work)
    scenes = work / f"scenes-n{args.n + args.add}-seed{args.seed}"
    started = time.perf_counter()
    made = generate_scenes(scenes, n=args.n + args.add, seed=args.seed)
    print(f"scenes: {args.n + args.add} in {time.perf_counter() - started:.1f}s (skipped={made.get('skipped', False)})")
    files = sorted((scenes / "images").iterdir())
    source, lake = work / "source", work / "lake"
    shutil.rmtree(source, ignore_errors=True)
    shutil.rmtree(lake, ignore_errors=True)
    link_files(files[: args.n], source)

    cfg = load_config(overrides=[f"spark.master={args.master}", f"lake.root={lake}"])
    install_bundled(registry_root(cfg))
    started = time.perf_counter()
    spark = build_session(cfg)
    print(f"session start: {time.perf_counter() - started:.1f}s, master {spark.sparkContext.master}")

    walls = []
    today = datetime.now(UTC).date()
    for night, (label, count) in enumerate((("full", args.n), ("incremental", args.add), ("unchanged", 0))):
        if label == "incremental":
            link_files(files[args.n :], source)
        spark.sparkContext.setJobGroup(label, f"nightly, {label}")
        started = time.perf_counter()
        # One night after another: each night's new images go to a partition of their own, as they do in use.
        run_id, _ = nightly(spark, cfg, str(source), ingest_date=today + timedelta(days=night))
        walls.append(time.perf_counter() - started)
        tracker = spark.sparkContext.statusTracker()
        groups = [label] + [stage_job_group(label, stage) for stage in stages(cfg)]
        jobs = sum(len(tracker.getJobIdsForGroup(group)) for group in groups)
        print(f"{label} run ({count} new scenes, {len(list(source.iterdir()))} in the source): {walls[-1]:.1f}s, "
              f"{jobs} Spark jobs")  # fmt: skip
        print("\n".join(stage_lines(spark, cfg, run_id)), flush=True)
    print(f"incremental / full: {walls[1] / walls[0]:.3f} (goal <= 0.20)")
    spark.stop()


if __name__ == "__main__":
    main()
