"""Train a model from a lake table and register it: ``python -m jobs.train --model classifier --data TABLE``.

Spark snapshots the table's good rows into a train and a held-out part (by a stable hash of ``image_id``) under
``<lake>/training/``; petastorm feeds them to torch; the model and its manifest (with held-out metrics) go to the
registry. ``--register WEIGHTS --manifest FILE`` registers weights trained elsewhere instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType
from torch import nn

from lakelens.cli import config_from_args, job_parser, run_job
from lakelens.coco import caption_texts
from lakelens.config import Config
from lakelens.lake import lake_uri, read_table, registry_root
from lakelens.schemas import IMAGES
from lakelens.spark import job_session
from models.captioner_training import evaluate_captioner, pretrain_decoder, train_captioner
from models.data import Preprocessing, petastorm_url
from models.detector_training import evaluate_detector, train_detector
from models.embedder_training import evaluate_embedder, train_embedder
from models.model_files import register_model
from models.registry import Manifest, build_model, save_model
from models.segmenter_training import evaluate_segmenter, train_segmenter
from models.train_loop import TrainSettings, evaluate_classifier, pick_device, train_classifier
from models.vocabulary import Vocabulary, tokenize
from stages.training_rows import (
    box_targets,
    class_names,
    label_targets,
    load_snapshot,
    mask_classes,
    small_groups,
    transform_one_caption_per_row,
    transform_training_rows,
    transform_with_bytes,
)

log = logging.getLogger("lakelens.train")
KINDS = ("classifier", "embedder", "detector", "segmenter", "captioner")
# Input side in pixels unless --size says otherwise: the detector needs more for objects of a few pixels.
DEFAULT_SIZE = {"classifier": 64, "embedder": 64, "detector": 96, "segmenter": 64, "captioner": 64}
# The column holding each kind's targets, unless --label-column says otherwise.
# Embedder labels shared by this many rows or fewer on average are written side by side in the snapshot (groups
# of near-duplicates or same content; classes are far larger and would fill whole batches).
GROUPED_MEAN_ROWS = 16
DEFAULT_TARGET_COLUMN = {
    "classifier": "label",
    "embedder": "label",
    "detector": "labels",
    "segmenter": "mask",
    "captioner": "caption",
}


def training_targets(
    kind: str, table: DataFrame, column: str, given_classes: str | None
) -> tuple[dict[str, Column], list[str], bool]:
    """The target columns of ``kind`` from ``table``, the class names in id order, and whether multi-label."""
    if kind == "embedder":
        if isinstance(table.schema[column].dataType, ArrayType):
            raise ValueError("the embedder learns from one label per image (equal labels are positives), not lists")
        return label_targets(column), given_classes.split(",") if given_classes else [], False
    if kind == "classifier":
        classes, multi_label = class_names(table, column, given_classes)
        return label_targets(column, classes if multi_label else None), classes, multi_label
    if kind == "detector":
        classes, _ = class_names(table, column, given_classes)
        return box_targets("boxes", column, classes), classes, False
    if kind == "segmenter":
        classes = given_classes.split(",") if given_classes else mask_classes(table)
        return {"mask": F.col(column)}, classes, False
    return {"caption": F.col("caption")}, [], False


def make_model(
    kind: str, classes: list[str], multi_label: bool, channels: int, dim: int, vocabulary: Vocabulary | None
) -> tuple[nn.Module, dict]:
    """An untrained model of ``kind`` and its architecture arguments (as the manifest records them)."""
    if kind == "classifier":
        arch_args = {"num_classes": len(classes), "in_channels": channels, "multi_label": multi_label}
    elif kind == "embedder":
        arch_args = {"dim": dim, "in_channels": channels}
    elif kind == "captioner":
        arch_args = {"vocab_size": len(vocabulary), "in_channels": channels}
    else:
        arch_args = {"num_classes": len(classes), "in_channels": channels}
    return build_model(Manifest.new(kind, kind, arch_args)), arch_args


def trainer(kind: str, vocabulary: Vocabulary | None) -> tuple[Callable, Callable]:
    """(train, evaluate) of ``kind``: train(model, url, prep, settings, device) -> per-epoch history;
    evaluate(model, url, prep, device) -> metrics."""
    if kind == "captioner":
        return partial(train_captioner, vocabulary=vocabulary), partial(evaluate_captioner, vocabulary=vocabulary)
    return {
        "classifier": (train_classifier, evaluate_classifier),
        "embedder": (train_embedder, evaluate_embedder),
        "detector": (train_detector, evaluate_detector),
        "segmenter": (train_segmenter, evaluate_segmenter),
    }[kind]


@dataclass(frozen=True)
class Snapshot:
    """What the Spark part of training made: the snapshot's parts and what the model needs to know of them."""

    table: str
    column: str
    folder: str
    counts: dict[str, int]
    classes: list[str]
    multi_label: bool
    vocabulary: Vocabulary | None
    pretraining: list[str]


def pretraining_captions(path: str | None, captions_by_part: dict[str, list[str]]) -> list[str]:
    """The captions of ``path`` (COCO JSON or text) that no held-out or evaluation row has as its caption, so text
    pretraining never reads a reference it is scored against."""
    if not path:
        return []
    scored = {" ".join(tokenize(c)) for part, found in captions_by_part.items() if part != "train" for c in found}
    texts = caption_texts(Path(path))
    kept = [c for c in texts if " ".join(tokenize(c)) not in scored]
    log.info("train: %d pretraining captions from %s (%d left out: captions of held-out or evaluation rows)",
             len(kept), path, len(texts) - len(kept))  # fmt: skip
    return kept


def take_snapshot(cfg: Config, args: argparse.Namespace) -> Snapshot:
    """Writes the training snapshot of ``args.data`` under ``<lake>/training/<name>/<UTC time>/``; Spark stops
    after it (when this job started it), which frees the lake's catalog for other jobs during training."""
    with job_session(cfg) as spark:
        table_name = args.data if "." in args.data else f"{cfg.lake.database}.{args.data}"
        table = transform_with_bytes(spark.table(table_name), read_table(spark, cfg, IMAGES))
        column = args.label_column or DEFAULT_TARGET_COLUMN[args.model]
        if args.label_expr:
            table, column = table.withColumn("label_expr", F.expr(args.label_expr)), "label_expr"
        if args.model == "captioner":
            table = transform_one_caption_per_row(table, column)
        targets, classes, multi_label = training_targets(args.model, table, column, args.classes)
        chosen = table.where(args.where) if args.where else table
        rows = transform_training_rows(chosen, targets, args.holdout_percent)
        name = args.name or args.model
        folder = f"{lake_uri(cfg)}/training/{name}/{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"
        parts = {"train": rows.filter(~F.col("holdout")), "holdout": rows.filter(F.col("holdout"))}
        if args.eval_where:
            parts["eval"] = transform_training_rows(table.where(args.eval_where), targets, 0)
        # Rows of an embedder label shared by a few rows only (near-duplicates, same content) train side by side.
        grouped = args.model == "embedder" and small_groups(parts["train"], "label", GROUPED_MEAN_ROWS)
        counts = load_snapshot(parts, folder, "label" if grouped else None)
        log.info("train: %s rows for training, %s held out, %d classes%s%s, snapshot %s", counts["train"],
                 counts["holdout"], len(classes), " (multi-label)" if multi_label else "",
                 " (equal labels side by side)" if grouped else "", folder)  # fmt: skip
        vocabulary, pretraining = None, []
        if args.model == "captioner":
            # The held-out and evaluation captions are read only to keep them out of text pretraining.
            parts_captions = {
                part: [r["caption"] for r in spark.read.parquet(f"{folder}/{part}").select("caption").collect()]
                for part in (counts if args.pretrain_captions else ["train"])
            }
            pretraining = pretraining_captions(args.pretrain_captions, parts_captions)
            vocabulary = Vocabulary.build([*(c for c in parts_captions["train"] if c), *pretraining])
    return Snapshot(table_name, column, folder, counts, classes, multi_label, vocabulary, pretraining)


def main(argv: Sequence[str] | None = None) -> int:
    parser = job_parser("jobs.train", __doc__.splitlines()[0])
    parser.add_argument("--model", choices=KINDS, default="classifier", help="what to train")
    parser.add_argument("--data", help="a table of the lake database (or db.table) with image bytes and targets")
    parser.add_argument(
        "--label-column",
        help="the targets: class ids (classifier, embedder; default label) or lists of class names (multi-label "
        "classifier; detector, default labels, with boxes in 'boxes'), the PNG class mask (segmenter, default "
        "mask), the caption (captioner, default caption; a list of captions gives one row each)",
    )
    parser.add_argument(
        "--label-expr",
        help="an SQL expression over the table's columns for the targets instead of --label-column, e.g. the "
        "embedder's content key of scenes: 'xxhash64(array_sort(arrays_zip(labels, colours, sizes)))'",
    )
    parser.add_argument("--where", help="SQL condition choosing the training rows, e.g. \"split = 'train'\"")
    parser.add_argument("--eval-where", help="SQL condition for a further evaluation set, e.g. \"split = 'test'\"")
    parser.add_argument("--classes", help="comma-separated class names, in id order (default: from the data)")
    parser.add_argument("--name", help="registry name (default: the model kind)")
    parser.add_argument("--epochs", type=int, default=5, help="passes over the training rows (default 5)")
    parser.add_argument("--batch-size", type=int, default=128, help="images per optimiser step (default 128)")
    parser.add_argument("--lr", type=float, default=2e-3, help="learning rate of the optimiser (default 0.002)")
    parser.add_argument("--size", type=int, help="input side in pixels (default: 96 for the detector, else 64)")
    parser.add_argument(
        "--channels", type=int, choices=(1, 3), default=3, help="input channels: 3 for colour, 1 for grey (default 3)"
    )
    parser.add_argument(
        "--holdout-percent",
        type=int,
        default=10,
        help="share of the rows held out for the metrics, chosen by a hash of image_id (default 10)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights' start and the shuffling (default 0)")
    parser.add_argument("--dim", type=int, default=64, help="embedder: vector length (default 64)")
    parser.add_argument(
        "--pretrain-captions",
        metavar="FILE",
        help="captioner: captions without images (COCO captions JSON, or text, one a line) the decoder reads first; "
        "any caption of a held-out or evaluation row is left out",
    )
    parser.add_argument("--pretrain-epochs", type=int, default=3, help="epochs over --pretrain-captions (default 3)")
    parser.add_argument(
        "--register",
        metavar="FILE",
        help="register a model trained elsewhere: .safetensors, a .pth state dict or .onnx (as jobs.models register)",
    )
    parser.add_argument("--manifest", help="the manifest (JSON) that goes with --register")
    args = parser.parse_args(argv)
    cfg = config_from_args(args)
    registry = registry_root(cfg)
    if args.register:
        if not args.manifest:
            parser.error("--register needs --manifest")
        entry = register_model(registry, args.register, args.manifest)
        print(json.dumps({"registered": entry.name, "version": entry.version, "registry": str(registry)}))
        return 0
    if not args.data:
        parser.error("--data is required to train")
    args.size = args.size or DEFAULT_SIZE[args.model]

    snap = take_snapshot(cfg, args)
    prep = Preprocessing(args.size, args.channels, (0.5,) * args.channels, (0.25,) * args.channels)
    settings = TrainSettings(args.epochs, args.batch_size, args.lr, args.seed)
    device = pick_device()
    model, arch_args = make_model(args.model, snap.classes, snap.multi_label, args.channels, args.dim, snap.vocabulary)
    train, evaluate = trainer(args.model, snap.vocabulary)
    pretrained = {}
    if snap.pretraining:
        pre_settings = TrainSettings(args.pretrain_epochs, args.batch_size, args.lr, args.seed)
        pre_history = pretrain_decoder(model, snap.pretraining, prep, pre_settings, device, snap.vocabulary)
        pretrained = {"pretrain_captions": args.pretrain_captions, "pretrain_rows": len(snap.pretraining),
                      "pretrain_epochs": args.pretrain_epochs, "pretrain_loss": pre_history[-1]["loss"]}  # fmt: skip
    history = train(model, petastorm_url(f"{snap.folder}/train"), prep, settings, device)
    metrics = {f"train_{k}": v for k, v in history[-1].items() if k != "rows"}
    for part in sorted(p for p, n in snap.counts.items() if p != "train" and n > 0):
        scores = evaluate(model, petastorm_url(f"{snap.folder}/{part}"), prep, device)
        metrics |= {f"{part}_{k}": v for k, v in scores.items() if k != "rows"}
    manifest = Manifest.new(
        args.name or args.model,
        args.model,
        arch_args,
        preprocessing=prep.to_manifest(),
        classes=snap.classes,
        vocabulary=snap.vocabulary.words if snap.vocabulary else [],
        training={
            "table": snap.table,
            "target_column": args.label_expr or snap.column,
            "where": args.where,
            "eval_where": args.eval_where,
            **{f"rows_{part}": n for part, n in snap.counts.items()},
            "snapshot": snap.folder,
            "holdout": f"sha256(image_id)[:8] mod 100 < {args.holdout_percent}",
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "seed": args.seed,
            "device": str(device),
            **pretrained,
        },
        metrics=metrics,
        command=shlex.join(["python", "-m", "jobs.train", *(argv if argv is not None else sys.argv[1:])]),
    )
    entry = save_model(model.cpu(), manifest, registry)
    print(json.dumps({"model": entry.name, "version": entry.version, "registry": str(registry), **entry.metrics}))
    return 0


if __name__ == "__main__":
    run_job(main)
