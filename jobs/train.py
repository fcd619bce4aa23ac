"""Train a model from a lake table and register it: ``python -m jobs.train --model classifier --data TABLE``.

Spark snapshots the table's good rows into a train and a held-out part (by a stable hash of ``image_id``) under
``<lake>/training/``; petastorm feeds them to torch; the model and its manifest (with held-out metrics) go to the
registry. ``--register WEIGHTS --manifest FILE`` registers weights trained elsewhere instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from collections.abc import Sequence

from lakelens.cli import config_from_args, job_parser, run_job
from lakelens.lake import registry_root
from models.backbones import STRIDE as BACKBONE_STRIDE
from models.backbones import find_backbone
from models.captioner_training import pretrain_decoder
from models.data import Preprocessing, petastorm_url
from models.embedder_training import LOSSES as EMBEDDER_LOSSES
from models.model_files import register_model
from models.pretrained import backbone_start
from models.registry import Manifest, save_model
from models.search_losses import NEGATIVES
from models.text_image import TEXT_TOWERS, image_tower_start
from models.text_image_training import SearchSettings, search_fields
from models.train_loop import BACKBONE_LR_SCALE, TrainSettings, pick_device, seed_everything
from stages.training import BACKBONE_SIZE, DEFAULT_SIZE, KINDS, make_model, take_snapshot, trainer


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
    parser.add_argument(
        "--dim", type=int, default=64, help="embedder, text_image: vector length; autoencoder: code length (default 64)"
    )
    parser.add_argument(
        "--noise",
        type=float,
        default=0.0,
        help="autoencoder: the denoising variant's Gaussian input noise while training (standard deviation in "
        "normalised units, 0.25 = 1/16 of the pixel range), default 0 (a plain autoencoder)",
    )
    parser.add_argument(
        "--loss",
        choices=sorted(EMBEDDER_LOSSES),
        default="multi_similarity",
        help="embedder: multi_similarity (default), triplet (hardest in the batch), contrastive (every pair) or "
        "pair (one same and one different pair per image, for same/different verification)",
    )
    parser.add_argument(
        "--text-tower",
        choices=TEXT_TOWERS,
        default="words",
        help="text_image: words (learnt from the training captions' words: scene captions) or sentence (the frozen "
        "pretrained all-MiniLM-L6-v2 and a learnt projection: free text, photos) (default words)",
    )
    parser.add_argument(
        "--negatives",
        choices=NEGATIVES,
        default="hardest",
        help="text_image: the bad image of each (caption, good, bad) triple: random, the hardest of the batch, or "
        "mined from the index of every training image each epoch (default hardest: measured best, BENCHMARKS.md)",
    )
    parser.add_argument("--margin", type=float, default=0.2, help="text_image: the hinge's cosine margin (0.2)")
    parser.add_argument(
        "--warmup-epochs",
        type=int,
        default=2,
        help="text_image: epochs of random negatives before hardest or mined ones, which collapse a fresh model (2)",
    )
    parser.add_argument(
        "--match-expr",
        help="text_image: an SQL expression over the table's columns whose equal values mark the images that answer "
        "a caption (default: the same caption), e.g. scenes with the same objects in any layout: "
        "'xxhash64(array_sort(arrays_zip(labels, colours, sizes)))'",
    )
    parser.add_argument(
        "--semi-hard",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="text_image: hardest and mined negatives only among the images ranked below the caption's own image "
        "(default; --no-semi-hard takes the hardest, which collapses the space)",
    )
    parser.add_argument(
        "--mine-top", type=int, default=10, help="text_image: mined negatives are drawn from a caption's top N (10)"
    )
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
    parser.add_argument(
        "--backbone",
        metavar="MODEL",
        help="start from the layers of a registered pretrained model (NAME or NAME:vN of architecture "
        "mobilenet_v2 or efficientnet_lite0: mobilenet-v2-imagenet, efficientnet-lite0-imagenet, installed when "
        "missing) instead of random ones; input then 224 px unless --size (a multiple of 32), RGB, normalised as "
        "the backbone was trained",
    )
    parser.add_argument(
        "--image-model",
        metavar="MODEL",
        help="text_image: start the image tower from a registered embedder (NAME or NAME:vN; the bundled scene "
        "'embedder' is installed when missing), taking its vector length, layers and input",
    )
    parser.add_argument(
        "--freeze-backbone",
        action="store_true",
        help="with --backbone: keep its weights as they are and train the rest (default: fine-tune them too, at "
        f"{BACKBONE_LR_SCALE} x --lr)",
    )
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
    if args.freeze_backbone and not args.backbone:
        parser.error("--freeze-backbone needs --backbone")
    if args.noise and (args.model != "autoencoder" or args.noise < 0):
        parser.error("--noise is for --model autoencoder, and at least 0")
    if args.backbone and args.model == "autoencoder":
        parser.error("the autoencoder learns its own conv stages: leave out --backbone")
    size_given = args.size is not None
    args.size = args.size or (BACKBONE_SIZE if args.backbone else DEFAULT_SIZE[args.model])
    if args.backbone and (args.channels != 3 or args.size % BACKBONE_STRIDE):
        parser.error(f"--backbone takes RGB input (--channels 3) at a multiple of {BACKBONE_STRIDE} pixels (--size)")
    if args.image_model and (args.model != "text_image" or args.backbone):
        parser.error("--image-model is for --model text_image, without --backbone")
    start = backbone_start(registry, args.backbone) if args.backbone else None
    image_start = image_tower_start(registry, args.image_model) if args.image_model else None
    if image_start and not size_given:
        args.size = image_start.preprocessing.size  # the input its layers were trained at

    snap = take_snapshot(cfg, args)
    if start:
        prep = dataclasses.replace(start.preprocessing, size=args.size)
    elif image_start:
        prep = dataclasses.replace(image_start.preprocessing, size=args.size)
    else:
        prep = Preprocessing(args.size, args.channels, (0.5,) * args.channels, (0.25,) * args.channels)
    settings = TrainSettings(args.epochs, args.batch_size, args.lr, args.seed)
    device = pick_device()
    seed_everything(args.seed)  # the weights' start, as --seed says: the same command makes the same model
    model, arch_args = make_model(
        args.model,
        snap.classes,
        snap.multi_label,
        args.channels,
        args.dim,
        snap.vocabulary,
        start,
        image_start,
        args.noise,
    )
    if args.freeze_backbone:
        find_backbone(model).requires_grad_(False)
    # The weights the model started from, where not random: a backbone, or (text_image) an embedder.
    started_from = {"backbone": start.ref, "backbone_frozen": args.freeze_backbone} if start else {}
    if image_start:
        started_from = {"image_model": image_start.ref}
    search = SearchSettings(args.negatives, args.margin, args.warmup_epochs, args.mine_top, args.semi_hard)
    train, evaluate = trainer(args.model, snap.vocabulary, search, bool(args.match_expr), args.loss)
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
            **started_from,
            **pretrained,
            **(search_fields(search, args.text_tower, args.match_expr) if args.model == "text_image" else {}),
            **({"loss": args.loss} if args.model == "embedder" else {}),
        },
        metrics=metrics,
        command=shlex.join(["python", "-m", "jobs.train", *(argv if argv is not None else sys.argv[1:])]),
    )
    entry = save_model(model.cpu(), manifest, registry)
    print(json.dumps({"model": entry.name, "version": entry.version, "registry": str(registry), **entry.metrics}))
    return 0


if __name__ == "__main__":
    run_job(main)
