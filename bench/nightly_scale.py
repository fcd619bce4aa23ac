"""The nightly job on a lake of synthetic scenes: a full run, then an incremental run that adds new scenes.

    python -m bench.nightly_scale [--n 10000] [--add 1000] [--work /tmp/lakelens-nightly-bench] [--master local[*]]

Makes ``n + add`` scenes once (kept in ``--work``), links the first ``n`` into the source folder and runs the
nightly job on a new lake (every default task, the bundled models); then links the other ``add`` in and runs it
again, which reads, annotates and indexes only those; then once more with nothing new (what a night costs when
nothing comes). Prints each run's wall time, Spark job count and CPU time (on Linux: the JVM's, the Python
workers', this process's), per stage its rows and images/s as the ``runs`` table recorded them, and the ratio of
the incremental run to the full one (the goal is at most 0.20). The runs share
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

from lakelens.config import LOCAL_CONFIG, SCENES_CONFIG, load_config
from lakelens.lake import read_table, registry_root
from lakelens.scenes import generate_scenes
from lakelens.schemas import RUNS
from lakelens.spark import build_session
from models.registry import install_bundled
from stages.nightly import nightly, stage_job_group, stages


def tree_cpu() -> dict[str, float]:
    """CPU seconds so far of this process ("driver"), its JVM ("jvm") and the JVM's Python workers ("workers",
    those ended included), from /proc; empty where there is none."""
    if not Path("/proc/self/stat").exists():
        return {}
    procs = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except (OSError, ValueError):
            continue
        name, fields = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
        procs[int(entry.name)] = (int(fields[1]), name, sum(int(f) for f in fields[11:15]))  # utime..cstime
    mine = {os.getpid()}
    for _ in range(4):  # driver -> JVM -> daemon -> workers
        mine |= {pid for pid, (parent, _, _) in procs.items() if parent in mine}
    hz, cpu = os.sysconf("SC_CLK_TCK"), {"driver": 0.0, "jvm": 0.0, "workers": 0.0}
    for pid in mine:
        _, name, ticks = procs[pid]
        kind = "driver" if pid == os.getpid() else "jvm" if name == "java" else "workers"
        cpu[kind] += ticks / hz
    return cpu


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

    # The scene models for every task, as the demo runs them (the figures in BENCHMARKS.md are theirs).
    cfg = load_config([LOCAL_CONFIG, SCENES_CONFIG], overrides=[f"spark.master={args.master}", f"lake.root={lake}"])
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
        started, cpu = time.perf_counter(), tree_cpu()
        # One night after another: each night's new images go to a partition of their own, as they do in use.
        run_id, _ = nightly(spark, cfg, str(source), ingest_date=today + timedelta(days=night))
        walls.append(time.perf_counter() - started)
        tracker = spark.sparkContext.statusTracker()
        groups = [label] + [stage_job_group(label, stage) for stage in stages(cfg)]
        jobs = sum(len(tracker.getJobIdsForGroup(group)) for group in groups)
        used = ", ".join(f"{k} {v - cpu[k]:.1f}s" for k, v in tree_cpu().items())
        print(f"{label} run ({count} new scenes, {len(list(source.iterdir()))} in the source): {walls[-1]:.1f}s, "
              f"{jobs} Spark jobs; CPU {used or 'not measured'}")  # fmt: skip
        print("\n".join(stage_lines(spark, cfg, run_id)), flush=True)
    print(f"incremental / full: {walls[1] / walls[0]:.3f} (goal <= 0.20)")
    spark.stop()


if __name__ == "__main__":
    main()
