"""The annotate tasks, each declared once: its name, output table, predictor, the model architectures that serve
it, the registry model it runs by default and its settings with their defaults. The configuration's checks, the
annotate stage, the UDF factory, the nightly job and the report read them from here; adding a task is its
predictor (``udfs/``), its model (``models/``), its table (``lakelens/schemas.py``) and one entry in :data:`TASKS`
(ARCHITECTURE.md, "Adding a task").

Nothing here imports torch: a predictor is named as ``module:Class``, imported where the models run.

Example:
    >>> TASKS["classify"].table.name, TASKS["classify"].options["top_k"].default
    ('labels', 5)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lakelens.checks import Check, positive, unit
from lakelens.schemas import (
    CAPTIONS,
    COLOURISED,
    DETECTIONS,
    EMBEDDINGS,
    LABELS,
    RECONSTRUCTIONS,
    SEGMENTS,
    TableSpec,
)
from lakelens.tint import KINDS as COLOUR_KINDS


@dataclass(frozen=True)
class Option:
    """One setting of a task's predictor (``annotate.options.<task>.<name>``): its default, which also fixes its type,
    the check of its value, and what it does."""

    default: Any
    check: Check
    help: str


@dataclass(frozen=True)
class Task:
    """An annotate task. ``predictor`` is ``module:Class`` of a ``udfs.predictor.Predictor`` whose ``configure``
    takes ``options``' names; its outputs are ``table``'s columns and those of the ``also`` tables.

    A task that sorts images (its predictor's ``kind`` output, one of ``kinds``) may leave some out: an image of a
    kind in ``leaves_out`` gets no row in ``table`` but one in ``annotate_left_out``, so that the model version does
    not see it again; the run counts each kind. ``also``: further tables each of the task's rows goes to, with the
    columns they share with its outputs (the autoencoder's code goes to ``embeddings``).
    """

    name: str
    table: TableSpec
    predictor: str
    architectures: tuple[str, ...]
    default_model: str
    help: str
    options: Mapping[str, Option] = field(default_factory=dict)
    kinds: tuple[str, ...] = ()
    leaves_out: tuple[str, ...] = ()
    also: tuple[TableSpec, ...] = ()

    def __post_init__(self) -> None:
        if not set(self.leaves_out) <= set(self.kinds):
            raise ValueError(f"task {self.name}: leaves_out {self.leaves_out} must be among its kinds {self.kinds}")

    @property
    def tables(self) -> tuple[TableSpec, ...]:
        """Every table the task writes: its own first."""
        return (self.table, *self.also)


# Pretrained ImageNet architectures (models/pretrained.py): they name 1000 classes and give pooled unit vectors.
# "onnx": a graph a user registered (models/onnx_model.py), whose manifest maps its outputs to scores or vectors.
BACKBONES = ("mobilenet_v2", "efficientnet_lite0")
COLOURISERS = ("colouriser_residual", "colouriser_hypercolumn")

# The default models are for photos where a pretrained model serves the task (models/pretrained.py; measured on COCO
# photos by bench.photo_models, BENCHMARKS.md): EfficientNet-Lite0 names more of them right (top-1 65 % against
# MobileNetV2's 56 %), MobileNetV2's vectors find more of a photo's own category (recall@5 0.854 against 0.806).
# detect, segment and caption have no pretrained photo model and keep the synthetic-scene models; conf/scenes.yaml
# names all five scene models (the demo's setup).
TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task(
            "classify", LABELS, "udfs.classify:ClassifyPredictor", ("classifier", *BACKBONES, "onnx"),
            "efficientnet-lite0-imagenet",
            "the best label and score of each image, and its top labels",
            {
                "top_k": Option(5, positive, "labels kept per image"),
                "threshold": Option(0.5, unit, "multi-label models: least score of a kept label"),
            },
        ),
        Task(
            "detect", DETECTIONS, "udfs.detect:DetectPredictor", ("detector",), "detector",
            "objects: label, score and box in the image's pixels",
            {"min_score": Option(0.3, unit, "least score of a kept object")},
        ),
        Task(
            "segment", SEGMENTS, "udfs.segment:SegmentPredictor", ("segmenter",), "segmenter",
            "a class mask at the image's size and each class's share of the pixels",
        ),
        Task(
            "caption", CAPTIONS, "udfs.caption:CaptionPredictor", ("captioner",), "captioner",
            "a caption and its score",
            {"beam_size": Option(3, positive, "beam width; 1 is greedy")},
        ),
        Task(
            "embed", EMBEDDINGS, "udfs.embed:EmbedPredictor", ("embedder", *BACKBONES, "onnx", "autoencoder"),
            "mobilenet-v2-imagenet",
            "a unit vector for similar-image search",
        ),
        Task(
            "search", EMBEDDINGS, "udfs.embed:EmbedPredictor", ("text_image",), "text-image",
            "the image's unit vector in a text-image space, for jobs.search --text (under the text model's name)",
        ),
        Task(
            "colourise", COLOURISED, "udfs.colourise:ColourisePredictor", COLOURISERS, "colouriser",
            "grey and tinted images in colour, at their size and with their own lightness; colour images left out",
            {"temperature": Option(0.38, positive, "annealed mean of the chroma bins: lower is more vivid, 1 the "
                                                   "plain mean")},
            kinds=COLOUR_KINDS, leaves_out=("colour",),
        ),
        Task(
            "autoencode", RECONSTRUCTIONS, "udfs.autoencode:AutoencodePredictor", ("autoencoder",), "autoencoder",
            "how badly an autoencoder gives the image back (odd images first) and where; its code in embeddings",
            also=(EMBEDDINGS,),
        ),
    )
}  # fmt: skip
