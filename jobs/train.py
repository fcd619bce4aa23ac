"""Train a model from a lake table and register it: ``python -m jobs.train --model classifier --data TABLE``.

Spark snapshots the table's good rows into a train and a held-out part (by a stable hash of ``image_id``) under
``<lake>/training/``; petastorm feeds them to torch; the model and its manifest (with held-out metrics) go to the
registry. ``--register WEIGHTS --manifest FILE`` registers weights trained elsewhere instead.
"""

from __future__ import annotations

import json
import logging
import shlex
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType

from lakelens.cli import config_from_args, job_parser, run_job
from lakelens.config import Config
from lakelens.lake import lake_uri, local_lake_root, read_table
from lakelens.schemas import IMAGES
from lakelens.spark import build_session
from models.classifier import Classifier
from models.data import Preprocessing, petastorm_url
from models.embedder import Embedder
from models.registry import Manifest, register_weights, save_model
from models.train_loop import (
    TrainSettings,
    evaluate_classifier,
    evaluate_embedder,
    pick_device,
    train_classifier,
    train_embedder,
)

log = logging.getLogger("lakelens.train")
MODELS = ("classifier", "embedder")


def transform_with_bytes(table: DataFrame, images: DataFrame) -> DataFrame:
    """Ground truth joined to the ``images`` table's bytes and error when it has no bytes of its own."""
    if "bytes" in table.columns:
        return table
    return table.join(images.select("image_id", "bytes", "error"), on="image_id", how="inner")


def transform_training_rows(
    table: DataFrame, label_column: str, holdout_percent: int, classes: Sequence[str] | None = None
) -> DataFrame:
    """(image_id, bytes, label, holdout) for every row with bytes and no error.

    ``label`` is the integer class id, or with ``classes`` (multi-label: the column holds lists of class names) the
    distinct ids of the names in the list. ``holdout`` is stable per image: the first 8 hex digits of
    SHA-256(image_id), mod 100, below ``holdout_percent``.
    """
    rows = table.filter(F.col("bytes").isNotNull())
    if "error" in table.columns:
        rows = rows.filter(F.col("error").isNull())
    if classes is None:
        label = F.col(label_column).cast("long")
    else:
        names = F.array(*[F.lit(c) for c in classes])
        ids = F.transform(F.col(label_column), lambda name: F.array_position(names, name) - 1)
        label = F.array_distinct(F.filter(ids, lambda i: i >= 0))
    bucket = F.conv(F.substring(F.sha2(F.col("image_id"), 256), 1, 8), 16, 10).cast("long") % 100
    return rows.select("image_id", "bytes", label.alias("label"), (bucket < holdout_percent).alias("holdout"))


def load_snapshot(parts: dict[str, DataFrame], folder: str) -> dict[str, int]:
    """Write each part as Parquet under ``folder`` (never over an existing snapshot); rows per part."""
    counts = {}
    for part, rows in parts.items():
        # Several files, so petastorm can shuffle row groups between epochs.
        rows.drop("holdout").repartition(8).write.mode("error").parquet(f"{folder}/{part}")
        counts[part] = rows.sparkSession.read.parquet(f"{folder}/{part}").count()
    return counts


def class_names(table: DataFrame, label_column: str, given: str | None) -> tuple[list[str], bool]:
    """Class names in id order and whether the task is multi-label (the label column holds lists of names)."""
    multi_label = isinstance(table.schema[label_column].dataType, ArrayType)
    if given:
        return given.split(","), multi_label
    if multi_label:
        names = table.select(F.explode(label_column).alias("name")).distinct().collect()
        return sorted(r["name"] for r in names), True
    top = table.agg(F.max(label_column)).first()[0]
    return [str(i) for i in range(int(top) + 1)], False


def registry_root(cfg: Config) -> Path:
    """The registry folder: ``models.registry``, else ``<lake root>/models`` (a local lake)."""
    if cfg.models.registry:
        return Path(cfg.models.registry)
    return local_lake_root(cfg, "the model registry", "set models.registry to a local folder") / "models"


def main(argv: Sequence[str] | None = None) -> int:
    parser = job_parser("jobs.train", __doc__.splitlines()[0])
    parser.add_argument("--model", choices=MODELS, default="classifier", help="what to train")
    parser.add_argument("--data", help="a table of the lake database (or db.table) with image bytes and labels")
    parser.add_argument("--label-column", default="label", help="integer class ids 0..K-1 (default: label)")
    parser.add_argument("--where", help="SQL condition choosing the training rows, e.g. \"split = 'train'\"")
    parser.add_argument("--eval-where", help="SQL condition for a further evaluation set, e.g. \"split = 'test'\"")
    parser.add_argument("--classes", help="comma-separated class names, in id order (default: the ids)")
    parser.add_argument("--name", help="registry name (default: the model kind)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--size", type=int, default=28, help="input side in pixels (default 28)")
    parser.add_argument("--channels", type=int, choices=(1, 3), default=3)
    parser.add_argument("--holdout-percent", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dim", type=int, default=64, help="embedder: vector length (default 64)")
    parser.add_argument("--register", metavar="WEIGHTS", help="register a safetensors file trained elsewhere")
    parser.add_argument("--manifest", help="the manifest (JSON) that goes with --register")
    args = parser.parse_args(argv)
    cfg = config_from_args(args)
    registry = registry_root(cfg)
    if args.register:
        if not args.manifest:
            parser.error("--register needs --manifest")
        entry = register_weights(registry, args.register, args.manifest)
        print(json.dumps({"registered": entry.name, "version": entry.version, "registry": str(registry)}))
        return 0
    if not args.data:
        parser.error("--data is required to train")

    spark = build_session(cfg)
    table_name = args.data if "." in args.data else f"{cfg.lake.database}.{args.data}"
    table = transform_with_bytes(spark.table(table_name), read_table(spark, cfg, IMAGES))
    classes, multi_label = class_names(table, args.label_column, args.classes)
    if multi_label and args.model == "embedder":
        raise ValueError("the embedder learns from one class id per image; --label-column holds lists")
    label_names = classes if multi_label else None
    rows = transform_training_rows(
        table.where(args.where) if args.where else table, args.label_column, args.holdout_percent, label_names
    )
    name = args.name or args.model
    folder = f"{lake_uri(cfg)}/training/{name}/{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"
    parts = {"train": rows.filter(~F.col("holdout")), "holdout": rows.filter(F.col("holdout"))}
    if args.eval_where:
        parts["eval"] = transform_training_rows(table.where(args.eval_where), args.label_column, 0, label_names)
    counts = load_snapshot(parts, folder)
    log.info("train: %s rows for training, %s held out, %d classes%s, snapshot %s", counts["train"],
             counts["holdout"], len(classes), " (multi-label)" if multi_label else "", folder)  # fmt: skip

    prep = Preprocessing(args.size, args.channels, (0.5,) * args.channels, (0.25,) * args.channels)
    settings = TrainSettings(args.epochs, args.batch_size, args.lr, args.seed)
    device = pick_device()
    if args.model == "embedder":
        arch_args = {"dim": args.dim, "in_channels": args.channels}
        model, train, evaluate = Embedder(**arch_args), train_embedder, evaluate_embedder
    else:
        arch_args = {"num_classes": len(classes), "in_channels": args.channels, "multi_label": multi_label}
        model, train, evaluate = Classifier(**arch_args), train_classifier, evaluate_classifier
    history = train(model, petastorm_url(f"{folder}/train"), prep, settings, device)
    metrics = {f"train_{k}": v for k, v in history[-1].items() if k != "rows"}
    for part in parts.keys() - {"train"}:
        scores = evaluate(model, petastorm_url(f"{folder}/{part}"), prep, device)
        metrics |= {f"{part}_{k}": v for k, v in scores.items() if k != "rows"}
    manifest = Manifest.new(
        name,
        args.model,
        arch_args,
        preprocessing={"size": args.size, "channels": args.channels, "mean": list(prep.mean), "std": list(prep.std)},
        classes=classes,
        training={
            "table": table_name,
            "where": args.where,
            "eval_where": args.eval_where,
            **{f"rows_{part}": n for part, n in counts.items()},
            "snapshot": folder,
            "holdout": f"sha256(image_id)[:8] mod 100 < {args.holdout_percent}",
            "epochs": args.epochs,
            "seed": args.seed,
            "device": str(device),
        },
        metrics=metrics,
        command=shlex.join(["python", "-m", "jobs.train", *(argv if argv is not None else sys.argv[1:])]),
    )
    entry = save_model(model.cpu(), manifest, registry)
    print(json.dumps({"model": entry.name, "version": entry.version, "registry": str(registry), **entry.metrics}))
    return 0


if __name__ == "__main__":
    run_job(main)
