"""Training and evaluation loops for the classifier, and the loop of the self-supervised models (colourisers,
autoencoder); Spark-free (data: petastorm table URLs).

CUDA with mixed precision when present, the CPU otherwise; seeds fixed; one log line per epoch.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from models.backbones import find_backbone
from models.classifier import Classifier
from models.data import Labels, NoTargets, Preprocessing, table_loader

log = logging.getLogger("lakelens.train")
# Learning rate of a pretrained backbone's parameters against the rest of the model's, when it is fine-tuned. AdamW
# moves every parameter by about the learning rate a step whatever its gradient: at 0.1 x 5e-3 the multi-label COCO
# classifier's backbone lost its ImageNet features within two epochs (loss stuck at the class priors).
BACKBONE_LR_SCALE = 0.01


@dataclass(frozen=True)
class TrainSettings:
    epochs: int
    batch_size: int = 128
    lr: float = 2e-3
    seed: int = 0
    workers: int = 2


def pick_device() -> torch.device:
    """The first CUDA device when there is one, else the CPU."""
    return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Optimiser:
    """AdamW (weight decay 1e-4) with a cosine schedule over the epochs, and loss scaling for mixed precision on
    CUDA: ``step(loss)`` once per batch, ``end_epoch()`` once per epoch.

    Only parameters that require gradients are trained (a frozen backbone's do not); those of a pretrained backbone
    being fine-tuned learn at :data:`BACKBONE_LR_SCALE` x the rate, so that the first steps of a new head, still
    random, do not wash out what ImageNet taught them.

    Args:
        clip_norm: largest gradient norm, or None to leave gradients as they are.
    """

    def __init__(
        self, model: nn.Module, settings: TrainSettings, device: torch.device, clip_norm: float | None = None
    ) -> None:
        self.amp = device.type == "cuda"
        self.parameters = [p for p in model.parameters() if p.requires_grad]
        backbone = find_backbone(model)
        pretrained = {id(p) for p in backbone.parameters()} if backbone is not None else set()
        groups = [
            {"params": [p for p in self.parameters if id(p) not in pretrained]},
            {"params": [p for p in self.parameters if id(p) in pretrained], "lr": settings.lr * BACKBONE_LR_SCALE},
        ]
        self.optimiser = torch.optim.AdamW([g for g in groups if g["params"]], lr=settings.lr, weight_decay=1e-4)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimiser, T_max=settings.epochs)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.clip_norm = clip_norm

    def step(self, loss: torch.Tensor) -> None:
        """Back-propagates ``loss`` and updates the parameters."""
        self.optimiser.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.clip_norm is not None:
            self.scaler.unscale_(self.optimiser)
            torch.nn.utils.clip_grad_norm_(self.parameters, self.clip_norm)
        self.scaler.step(self.optimiser)
        self.scaler.update()

    def end_epoch(self) -> None:
        self.scheduler.step()


class Tally:
    """Running loss and quality of a classifier: accuracy (single-label), or micro F1 at 0.5 and mean average
    precision over the classes (multi-label)."""

    def __init__(self, multi_label: bool) -> None:
        self.multi_label = multi_label
        self.seen, self.loss, self.correct, self.tp, self.fp, self.fn = 0, 0.0, 0, 0, 0, 0
        self.scores: list[np.ndarray] = []
        self.targets: list[np.ndarray] = []

    def add(self, logits: torch.Tensor, labels: torch.Tensor, loss: float) -> None:
        self.seen += len(labels)
        self.loss += loss * len(labels)
        if self.multi_label:
            predicted, actual = logits > 0, labels > 0.5
            self.tp += (predicted & actual).sum().item()
            self.fp += (predicted & ~actual).sum().item()
            self.fn += (~predicted & actual).sum().item()
            self.scores.append(logits.float().cpu().numpy())
            self.targets.append(actual.cpu().numpy())
        else:
            self.correct += (logits.argmax(1) == labels).sum().item()

    def result(self) -> dict[str, float]:
        if self.seen == 0:
            raise ValueError("no rows were scored")
        if self.multi_label:
            mean_ap, classes = mean_average_precision(np.concatenate(self.scores), np.concatenate(self.targets))
            f1 = 2 * self.tp / max(2 * self.tp + self.fp + self.fn, 1)
            quality = {"f1": f1, "map": mean_ap, "map_classes": float(classes)}
        else:
            quality = {"accuracy": self.correct / self.seen}
        return {**quality, "loss": self.loss / self.seen, "rows": float(self.seen)}


def mean_average_precision(scores: np.ndarray, targets: np.ndarray) -> tuple[float, int]:
    """Multi-label mAP: per class, the images ranked by score and the precision at each positive's rank averaged
    (average precision, as scikit-learn's ``average_precision_score`` without ties); then the mean over the classes
    that have a positive.

    Args:
        scores: float [N, K], higher = more likely; targets: bool [N, K].

    Returns:
        The mean (nan where no class has a positive) and the number of classes it averages.
    """
    precisions = []
    for k in range(scores.shape[1]):
        if not targets[:, k].any():
            continue
        hits = targets[np.argsort(-scores[:, k], kind="stable"), k]
        precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
        precisions.append(float(precision[hits].mean()))
    return (float(np.mean(precisions)) if precisions else float("nan")), len(precisions)


def train_on_images(
    model: nn.Module,
    train_url: str,
    prep: Preprocessing,
    settings: TrainSettings,
    device: torch.device,
    loss_of: Callable[[nn.Module, torch.Tensor], torch.Tensor],
    what: str,
) -> list[dict[str, float]]:
    """Train in place, self-supervised, on the images of the table at ``train_url`` as ``prep`` decodes them:
    ``loss_of(model, pixels [N, C, S, S] on the device)`` is minimised; returns per epoch {loss, rows,
    images_per_s}, logged as ``what`` loss."""
    seed_everything(settings.seed)
    model.to(device).train()
    optimiser = Optimiser(model, settings, device)
    history = []
    for epoch in range(settings.epochs):
        started, seen, total = time.perf_counter(), 0, 0.0
        with table_loader(train_url, prep, settings.batch_size, NoTargets(), seed=settings.seed + epoch,
                          workers=settings.workers) as loader:  # fmt: skip
            for batch in loader:
                pixels = batch["pixels"].to(device, non_blocking=True)
                with torch.autocast(device.type, enabled=optimiser.amp):
                    loss = loss_of(model, pixels)
                optimiser.step(loss)
                seen += len(pixels)
                total += loss.item() * len(pixels)
        optimiser.end_epoch()
        if not seen:
            raise ValueError(f"no training rows in {train_url}")
        stats = {"loss": total / seen, "rows": float(seen), "images_per_s": seen / (time.perf_counter() - started)}
        history.append(stats)
        log.info("epoch %d/%d: %s loss %.4f, %.0f images/s", epoch + 1, settings.epochs, what, stats["loss"],
                 stats["images_per_s"])  # fmt: skip
    return history


def train_classifier(
    model: Classifier, train_url: str, prep: Preprocessing, settings: TrainSettings, device: torch.device
) -> list[dict[str, float]]:
    """Train in place on the table at ``train_url``; returns per epoch {accuracy or f1, loss, rows, images_per_s}."""
    seed_everything(settings.seed)
    model.to(device).train()
    optimiser = Optimiser(model, settings, device)
    num_classes = _multi_label_classes(model)
    history = []
    for epoch in range(settings.epochs):
        started, tally = time.perf_counter(), Tally(model.multi_label)
        with table_loader(
            train_url, prep, settings.batch_size, Labels(num_classes), seed=settings.seed + epoch,
            workers=settings.workers,
        ) as loader:  # fmt: skip
            for batch in loader:
                images = batch["pixels"].to(device, non_blocking=True)
                labels = batch["label"].to(device, non_blocking=True)
                with torch.autocast(device.type, enabled=optimiser.amp):
                    logits = model(images)["logits"]
                    loss = model.loss(logits, labels)
                optimiser.step(loss)
                tally.add(logits.detach().float(), labels, loss.item())
        optimiser.end_epoch()
        stats = {**tally.result(), "images_per_s": tally.seen / (time.perf_counter() - started)}
        history.append(stats)
        quality = "f1" if model.multi_label else "accuracy"
        log.info(
            "epoch %d/%d: loss %.4f, train %s %.4f, %.0f images/s",
            epoch + 1, settings.epochs, stats["loss"], quality, stats[quality], stats["images_per_s"],
        )  # fmt: skip
    return history


@torch.no_grad()
def evaluate_classifier(
    model: Classifier, url: str, prep: Preprocessing, device: torch.device, batch_size: int = 256
) -> dict[str, float]:
    """Accuracy (or micro F1 for multi-label), mean loss and rows over every row of the table at ``url``."""
    model.to(device).eval()
    tally = Tally(model.multi_label)
    with table_loader(url, prep, batch_size, Labels(_multi_label_classes(model)), shuffle=False) as loader:
        for batch in loader:
            images, labels = batch["pixels"].to(device), batch["label"].to(device)
            logits = model(images)["logits"]
            tally.add(logits, labels, model.loss(logits, labels).item())
    return tally.result()


def _multi_label_classes(model: Classifier) -> int | None:
    return model.head[-1].out_features if model.multi_label else None
