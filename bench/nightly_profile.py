"""Where an incremental nightly run spends its time: every Spark job of each stage, from Spark's REST API.

    python -m bench.nightly_profile [--n 10000] [--add 1000] [--work /tmp/lakelens-nightly-bench]

Uses the scenes ``bench.nightly_scale`` made in ``--work``. The first call runs the nightly job on ``n`` scenes and
keeps a copy of that lake; every call then starts from the copy, runs a night with nothing new (to warm the JVM and
the Python workers), adds ``add`` scenes and runs again, and prints for each stage its wall time and each job's
duration, start (seconds into the stage) and call site. The Spark UI it reads listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import yaml
from pyspark.sql import SparkSession

import stages.nightly
from bench.nightly_scale import link_files
from lakelens.config import LOCAL_CONFIG, SCENES_CONFIG, Config, load_config
from lakelens.lake import registry_root
from lakelens.spark import build_session
from models.registry import install_bundled

UI_PORT = 4077


def spark_time(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%Z").replace(tzinfo=UTC).timestamp()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--add", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default="/tmp/lakelens-nightly-bench")
    args = parser.parse_args()

    work = Path(args.work)
    scenes = work / f"scenes-n{args.n + args.add}-seed{args.seed}" / "images"
    if not scenes.is_dir():
        raise SystemExit(f"no scenes in {scenes}: run python -m bench.nightly_scale --n {args.n} --add {args.add}")
    files = sorted(scenes.iterdir())
    profile = work / f"profile-n{args.n}"
    source, lake, kept = profile / "source", profile / "lake", profile / "lake-after-full"
    shutil.rmtree(source, ignore_errors=True)
    link_files(files[: args.n], source)
    ui = profile / "ui.yaml"
    ui.parent.mkdir(parents=True, exist_ok=True)
    ui.write_text(yaml.safe_dump({"spark": {"conf": {"spark.ui.enabled": True, "spark.ui.port": UI_PORT}}}))
    cfg = load_config([LOCAL_CONFIG, SCENES_CONFIG, ui], overrides=["spark.master=local[*]", f"lake.root={lake}"])
    if not kept.exists():
        shutil.rmtree(lake, ignore_errors=True)
        install_bundled(registry_root(cfg))
        spark = build_session(cfg)
        stages.nightly.nightly(spark, cfg, str(source))
        spark.stop()
        shutil.copytree(lake, kept)
    shutil.rmtree(lake, ignore_errors=True)
    shutil.copytree(kept, lake)

    spark = build_session(cfg)
    sc = spark.sparkContext
    started = time.time()
    stages.nightly.nightly(spark, cfg, str(source))
    print(f"warm-up, nothing new: {time.time() - started:.1f}s")
    link_files(files[args.n : args.n + args.add], source)
    timings: list[tuple[str, float, float]] = []
    run_stage = stages.nightly.run_stage

    def timed(
        spark_: SparkSession,
        cfg_: Config,
        stage: str,
        source_: str,
        ingest_date: date | None = None,
        ready: Callable[[], None] = lambda: None,
    ) -> stages.nightly.StageResult:
        begun = time.time()
        result = run_stage(spark_, cfg_, stage, source_, ingest_date, ready)
        timings.append((stage, begun, time.time()))
        return result

    stages.nightly.run_stage = timed
    started = time.time()
    stages.nightly.nightly(spark, cfg, str(source))
    print(f"incremental, +{args.add}: {time.time() - started:.1f}s")
    api = f"http://127.0.0.1:{UI_PORT}/api/v1/applications/{sc.applicationId}/jobs"
    listed = [j for j in json.load(urllib.request.urlopen(api)) if "completionTime" in j]
    for stage, begun, ended in timings:
        # Stages run side by side: a job is the stage's by its job group, within the stage's time.
        group = stages.nightly.stage_job_group(None, stage)
        mine = sorted(
            (j for j in listed if j.get("jobGroup") == group and begun <= spark_time(j["submissionTime"]) <= ended),
            key=lambda j: j["jobId"],
        )
        print(f"== {stage}: {ended - begun:.2f}s, {len(mine)} jobs")
        for j in mine:
            submitted = spark_time(j["submissionTime"])
            took = spark_time(j["completionTime"]) - submitted
            print(f"   {took:6.2f}s at +{submitted - begun:6.2f}s  {j['name'][:100]}")


if __name__ == "__main__":
    main()
