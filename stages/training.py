"""Training a model from a lake table (what ``jobs.train`` wires): the Spark snapshot of the table's rows, the
model of each kind (from scratch or on a pretrained backbone) and its training and evaluation loops.

Example:
    >>> snap = take_snapshot(cfg, args)                                   # Spark stops after it
    >>> model, arch_args = make_model("classifier", snap.classes, snap.multi_label, 3, 64, None, start)
    >>> train, evaluate = trainer("classifier", None)
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType
from torch import nn

from lakelens.coco import caption_texts
from lakelens.config import Config
from lakelens.lake import lake_uri, read_table
from lakelens.schemas import IMAGES
from lakelens.spark import job_session
from lakelens.tasks import COLOURISERS
from models.autoencoder_training import evaluate_autoencoder, train_autoencoder
from models.backbones import find_backbone
from models.captioner_training import evaluate_captioner, train_captioner
from models.colouriser_training import evaluate_colouriser, train_colouriser
from models.detector_training import evaluate_detector, train_detector
from models.embedder_training import evaluate_embedder, train_embedder
from models.pretrained import BackboneStart
from models.registry import Manifest, build_model
from models.segmenter_training import evaluate_segmenter, train_segmenter
from models.text_image import ImageTowerStart
from models.text_image_training import PairTargets, SearchSettings, evaluate_text_image, train_text_image
from models.train_loop import evaluate_classifier, train_classifier
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
# Kinds that learn from the images alone: the image is its own target.
SELF_SUPERVISED = (*COLOURISERS, "autoencoder")
KINDS = ("classifier", "embedder", "detector", "segmenter", "captioner", "text_image", *SELF_SUPERVISED)
# Input side in pixels unless --size says otherwise: the detector needs more for objects of a few pixels.
DEFAULT_SIZE = {"classifier": 64, "embedder": 64, "detector": 96, "segmenter": 64, "captioner": 64, "text_image": 64,
                **dict.fromkeys(SELF_SUPERVISED, 64)}  # fmt: skip
# Input side with a pretrained backbone: the 224 pixels of its ImageNet training (a multiple of its stride, 32).
BACKBONE_SIZE = 224
# Anchor sides (fractions of the image side) of a detector on a backbone, for photos' objects of every size.
PHOTO_ANCHOR_SIZES = (0.1, 0.2, 0.4, 0.8)
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
    "text_image": "caption",
    **dict.fromkeys(SELF_SUPERVISED, "bytes"),
}
# Kinds that learn from captions: one row per caption.
CAPTION_KINDS = ("captioner", "text_image")


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
    if kind in SELF_SUPERVISED:
        return {}, [], False
    return {"caption": F.col("caption")}, [], False


def make_model(
    kind: str,
    classes: list[str],
    multi_label: bool,
    channels: int,
    dim: int,
    vocabulary: Vocabulary | None,
    start: BackboneStart | None = None,
    image_start: ImageTowerStart | None = None,
    noise: float = 0.0,
) -> tuple[nn.Module, dict]:
    """A model of ``kind`` and its architecture arguments (as the manifest records them): untrained, or with the
    layers of a pretrained backbone holding the weights of ``start``, or (text_image) an image tower holding those
    of a registered embedder, ``image_start``, whose arguments it takes. ``noise``: the autoencoder's training
    noise (its denoising variant)."""
    if kind == "classifier":
        arch_args = {"num_classes": len(classes), "in_channels": channels, "multi_label": multi_label}
    elif kind == "embedder":
        arch_args = {"dim": dim, "in_channels": channels}
    elif kind == "captioner":
        arch_args = {"vocab_size": len(vocabulary), "in_channels": channels}
    elif kind == "text_image":
        arch_args = {"dim": dim, "in_channels": channels, "text_tower": "words" if vocabulary else "sentence",
                     "vocab_size": len(vocabulary) if vocabulary else 0}  # fmt: skip
    elif kind in COLOURISERS:
        arch_args = {}  # grey in, whatever the images' channels
    elif kind == "autoencoder":
        arch_args = {"code_dim": dim, "in_channels": channels, "noise": noise}
    else:
        arch_args = {"num_classes": len(classes), "in_channels": channels}
    if start is not None:
        arch_args["backbone"] = start.architecture
        if kind == "detector":  # objects in photos fill up to the whole frame, unlike the scenes' shapes
            arch_args["anchor_sizes"] = list(PHOTO_ANCHOR_SIZES)
    if image_start is not None:
        arch_args |= image_start.arch_args
    model = build_model(Manifest.new(kind, kind, arch_args))
    if start is not None:
        find_backbone(model).load_pretrained(start.state)
    if image_start is not None:
        model.image.load_state_dict(image_start.state, strict=True)
    return model, arch_args


def trainer(
    kind: str, vocabulary: Vocabulary | None, search: SearchSettings | None = None, match_key: bool = False,
    loss: str = "multi_similarity",
) -> tuple[Callable, Callable]:  # fmt: skip
    """(train, evaluate) of ``kind``: train(model, url, prep, settings, device) -> per-epoch history;
    evaluate(model, url, prep, device) -> metrics. ``text_image`` reads its text with the words tower where
    ``vocabulary`` is given, else with the sentence tower, makes its triples as ``search`` says, and with
    ``match_key`` takes the snapshot's ``match_key`` for which images answer a caption; the embedder learns by
    ``loss`` (``models.embedder_training.LOSSES``)."""
    if kind == "captioner":
        return partial(train_captioner, vocabulary=vocabulary), partial(evaluate_captioner, vocabulary=vocabulary)
    if kind == "text_image":
        words = tuple(vocabulary.words) if vocabulary else ()
        targets = PairTargets("words" if vocabulary else "sentence", words, match_key)
        return (partial(train_text_image, targets=targets, search=search or SearchSettings()),
                partial(evaluate_text_image, targets=targets))  # fmt: skip
    return {
        "classifier": (train_classifier, evaluate_classifier),
        "embedder": (partial(train_embedder, loss=loss), evaluate_embedder),
        "detector": (train_detector, evaluate_detector),
        "segmenter": (train_segmenter, evaluate_segmenter),
        **dict.fromkeys(COLOURISERS, (train_colouriser, evaluate_colouriser)),
        "autoencoder": (train_autoencoder, evaluate_autoencoder),
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
        if args.model in CAPTION_KINDS:
            table = transform_one_caption_per_row(table, column)
        targets, classes, multi_label = training_targets(args.model, table, column, args.classes)
        if args.model == "text_image" and args.match_expr:
            targets["match_key"] = F.expr(args.match_expr).cast("long")
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
        if args.model == "text_image" and args.text_tower == "words":
            train_captions = spark.read.parquet(f"{folder}/train").select("caption").collect()
            vocabulary = Vocabulary.build(r["caption"] for r in train_captions if r["caption"])
    return Snapshot(table_name, column, folder, counts, classes, multi_label, vocabulary, pretraining)
