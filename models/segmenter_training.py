"""Training and evaluation of the segmenter on lake snapshots with a PNG ``mask`` column; Spark-free.

CUDA with mixed precision when present, the CPU otherwise; seeds fixed; one log line per epoch.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from models.data import Preprocessing, table_loader
from models.masks import confusion_matrix, decode_mask, iou_per_class, mean_iou, pixel_accuracy
from models.segmenter import Segmenter, segmentation_loss
from models.train_loop import Optimiser, TrainSettings, seed_everything

log = logging.getLogger("lakelens.train")


@dataclass(frozen=True)
class MaskTargets:
    """``mask``: int64 [size, size] class ids from the PNG class mask, resized with NEAREST to the input size."""

    size: int
    columns: tuple[str, ...] = ("mask",)

    def fields(self) -> list[tuple[str, Any, tuple[int, ...]]]:
        return [("mask", np.int64, (self.size, self.size))]

    def decode(self, rows: pd.DataFrame) -> dict[str, list]:
        return {"mask": [decode_mask(data, self.size) for data in rows["mask"]]}


class MaskTally:
    """Running loss and pixel confusion of a segmenter over the batches seen."""

    def __init__(self, num_classes: int) -> None:
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)
        self.seen, self.loss = 0, 0.0

    def add(self, logits: torch.Tensor, masks: torch.Tensor, loss: float) -> None:
        self.seen += len(masks)
        self.loss += loss * len(masks)
        self.confusion += confusion_matrix(logits.argmax(dim=1), masks, len(self.confusion))

    def result(self) -> dict[str, float]:
        if self.seen == 0:
            raise ValueError("no rows were scored")
        return {
            "miou": mean_iou(self.confusion),
            "pixel_accuracy": pixel_accuracy(self.confusion),
            "loss": self.loss / self.seen,
            "rows": float(self.seen),
        }


def train_segmenter(
    model: Segmenter, train_url: str, prep: Preprocessing, settings: TrainSettings, device: torch.device
) -> list[dict[str, float]]:
    """Train in place on the table at ``train_url`` (``bytes`` and a PNG ``mask`` column) at the input size
    ``prep.size``; returns per epoch {loss, miou, pixel_accuracy (on the training batches), rows, images_per_s}."""
    seed_everything(settings.seed)
    model.to(device).train()
    optimiser = Optimiser(model, settings, device)
    history = []
    for epoch in range(settings.epochs):
        started, tally = time.perf_counter(), MaskTally(model.num_classes)
        with table_loader(
            train_url, prep, settings.batch_size, MaskTargets(prep.size), seed=settings.seed + epoch,
            workers=settings.workers,
        ) as loader:  # fmt: skip
            for batch in loader:
                images = batch["pixels"].to(device, non_blocking=True)
                masks = batch["mask"].to(device, non_blocking=True)
                with torch.autocast(device.type, enabled=optimiser.amp):
                    outputs = model(images)
                    loss = segmentation_loss(outputs, masks)
                optimiser.step(loss)
                tally.add(outputs["logits"].detach(), masks, loss.item())
        optimiser.end_epoch()
        stats = {**tally.result(), "images_per_s": tally.seen / (time.perf_counter() - started)}
        history.append(stats)
        log.info(
            "epoch %d/%d: loss %.4f, train mIoU %.4f, %.0f images/s",
            epoch + 1, settings.epochs, stats["loss"], stats["miou"], stats["images_per_s"],
        )  # fmt: skip
    return history


@torch.no_grad()
def evaluate_segmenter(
    model: Segmenter, url: str, prep: Preprocessing, device: torch.device, batch_size: int = 64
) -> dict[str, float]:
    """Scores over every row of the table at ``url``, at the model's input size ``prep.size`` (the masks are resized
    with NEAREST to it): mean loss, pixel accuracy, and "miou", the mean over classes (background included) of
    intersection / union summed over all pixels of the set; classes in neither truth nor prediction are skipped.
    Also "iou_<k>" per class id k present, and "rows"."""
    model.to(device).eval()
    tally = MaskTally(model.num_classes)
    with table_loader(url, prep, batch_size, MaskTargets(prep.size), shuffle=False) as loader:
        for batch in loader:
            images, masks = batch["pixels"].to(device), batch["mask"].to(device)
            outputs = model(images)
            tally.add(outputs["logits"], masks, segmentation_loss(outputs, masks).item())
    per_class = {f"iou_{k}": score for k, score in iou_per_class(tally.confusion).items()}
    return {**tally.result(), **per_class}
