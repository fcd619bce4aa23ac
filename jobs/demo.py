"""The embedded default, end to end: the nightly job over synthetic scenes with the scene models, in a local lake.

``./build.sh demo [--n N] [--seed S] [--lake PATH]`` runs this, with ``conf/scenes.yaml`` over ``base.yaml`` (all
five tasks, each by its bundled scene model, which the nightly job installs into the registry). Re-running it
changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from lakelens.cli import config_from_args, job_parser, run_job
from lakelens.config import SCENES_CONFIG
from lakelens.lake import lake_uri, local_lake_root, registry_root
from lakelens.scenes import generate_scenes
from lakelens.spark import build_session
from lakelens.tasks import TASKS
from models.registry import model_names
from stages.nightly import nightly
from stages.report import write_report

log = logging.getLogger("lakelens.demo")


def main(argv: Sequence[str] | None = None) -> int:
    parser = job_parser("jobs.demo", __doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="synthetic images to make (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the scenes (default 0)")
    args = parser.parse_args(argv)
    cfg = config_from_args(args, defaults=[SCENES_CONFIG])
    root = lake_uri(cfg)
    scenes = local_lake_root(cfg, "the demo", "give it a local --lake") / "sources" / f"synth-n{args.n}-seed{args.seed}"

    log.info("demo: making %d synthetic scenes in %s", args.n, scenes)
    made = generate_scenes(scenes, n=args.n, seed=args.seed)
    log.info("demo: scenes %s in %.1fs", "already there" if made.get("skipped") else "made", made["seconds"])
    spark = build_session(cfg)
    run_id, _ = nightly(spark, cfg, str(scenes / "images"), on_stage=lambda stage, result: print(result.summary))
    report = write_report(spark, cfg, local_lake_root(cfg, "the demo", "give it a local --lake") / "report")
    db = cfg.lake.database
    similar = ("similar",) if "embed" in cfg.annotate.tasks else ()
    index_tables = ("signatures", "lsh_buckets", "near_dup_pairs", "dup_groups", *similar)
    annotations = dict.fromkeys(spec.name for t in cfg.annotate.tasks for spec in TASKS[t].tables)
    tables = ", ".join(f"{db}.{t}" for t in ("images", "image_uris", *annotations, *index_tables, "runs"))
    lake_arg = "" if cfg.lake.root == "./lake" else f" --lake {cfg.lake.root}"
    registry = registry_root(cfg)
    print(
        f"\nnightly run:  {run_id} (its stages: SELECT * FROM runs)\n"
        f"lake:         {root}\n"
        f"tables:       {tables}\n              (Parquet under {root}/warehouse/{db}.db)\n"
        f"views:        {db}.image_summary, {db}.top_images_by_label, {db}.dup_group_members\n"
        f"report:       {report} (open it in a browser)\n"
        f"scenes:       {scenes}/images, ground truth {scenes}/ground_truth.parquet\n"
        f"models:       {registry} ({', '.join(model_names(registry)) or 'none'})\n"
        f'query it:     ./build.sh sql "SELECT top_label, count(*) AS n FROM image_summary GROUP BY top_label"'
        f"{lake_arg}\n"
        f"one image:    .venv/bin/python -m jobs.query --image {min((scenes / 'images').iterdir())}{lake_arg}"
    )
    return 0


if __name__ == "__main__":
    run_job(main)
