"""Training and evaluation loops for the classifier and the embedder; Spark-free (data: petastorm table URLs).

CUDA with mixed precision when present, the CPU otherwise; seeds fixed; one log line per epoch.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass

import numpy as np
import torch

from models.classifier import Classifier
from models.data import Preprocessing, table_loader
from models.embedder import Embedder, triplet_loss_hard

log = logging.getLogger("lakelens.train")


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


class Tally:
    """Running loss and quality of a classifier: accuracy (single-label) or micro F1 at 0.5 (multi-label)."""

    def __init__(self, multi_label: bool) -> None:
        self.multi_label = multi_label
        self.seen, self.loss, self.correct, self.tp, self.fp, self.fn = 0, 0.0, 0, 0, 0, 0

    def add(self, logits: torch.Tensor, labels: torch.Tensor, loss: float) -> None:
        self.seen += len(labels)
        self.loss += loss * len(labels)
        if self.multi_label:
            predicted, actual = logits > 0, labels > 0.5
            self.tp += (predicted & actual).sum().item()
            self.fp += (predicted & ~actual).sum().item()
            self.fn += (~predicted & actual).sum().item()
        else:
            self.correct += (logits.argmax(1) == labels).sum().item()

    def result(self) -> dict[str, float]:
        if self.seen == 0:
            raise ValueError("no rows were scored")
        quality = (
            {"f1": 2 * self.tp / max(2 * self.tp + self.fp + self.fn, 1)}
            if self.multi_label
            else {"accuracy": self.correct / self.seen}
        )
        return {**quality, "loss": self.loss / self.seen, "rows": float(self.seen)}


def train_classifier(
    model: Classifier, train_url: str, prep: Preprocessing, settings: TrainSettings, device: torch.device
) -> list[dict[str, float]]:
    """Train in place on the table at ``train_url``; returns per epoch {accuracy or f1, loss, rows, images_per_s}."""
    seed_everything(settings.seed)
    model.to(device).train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=settings.epochs)
    amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    num_classes = _multi_label_classes(model)
    history = []
    for epoch in range(settings.epochs):
        started, tally = time.perf_counter(), Tally(model.multi_label)
        with table_loader(
            train_url, prep, settings.batch_size, seed=settings.seed + epoch, workers=settings.workers,
            num_classes=num_classes,
        ) as loader:  # fmt: skip
            for batch in loader:
                images = batch["pixels"].to(device, non_blocking=True)
                labels = batch["label"].to(device, non_blocking=True)
                with torch.autocast(device.type, enabled=amp):
                    logits = model(images)["logits"]
                    loss = model.loss(logits, labels)
                optimiser.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimiser)
                scaler.update()
                tally.add(logits.detach().float(), labels, loss.item())
        scheduler.step()
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
    with table_loader(url, prep, batch_size, shuffle=False, num_classes=_multi_label_classes(model)) as loader:
        for batch in loader:
            images, labels = batch["pixels"].to(device), batch["label"].to(device)
            logits = model(images)["logits"]
            tally.add(logits, labels, model.loss(logits, labels).item())
    return tally.result()


def _multi_label_classes(model: Classifier) -> int | None:
    return model.head[-1].out_features if model.multi_label else None


def train_embedder(
    model: Embedder, train_url: str, prep: Preprocessing, settings: TrainSettings, device: torch.device,
    margin: float = 0.2,
) -> list[dict[str, float]]:  # fmt: skip
    """Metric learning in place: images of the same class are positives; in-batch hard negatives (triplet hinge).

    Returns per epoch {loss, rows, images_per_s}.
    """
    seed_everything(settings.seed)
    model.to(device).train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=settings.epochs)
    history = []
    for epoch in range(settings.epochs):
        started, seen, total = time.perf_counter(), 0, 0.0
        with table_loader(
            train_url, prep, settings.batch_size, seed=settings.seed + epoch, workers=settings.workers
        ) as loader:
            for batch in loader:
                vectors = model(batch["pixels"].to(device, non_blocking=True))["vectors"]
                loss = triplet_loss_hard(vectors, batch["label"].to(device, non_blocking=True), margin)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                seen += len(vectors)
                total += loss.item() * len(vectors)
        scheduler.step()
        stats = {
            "loss": total / max(seen, 1),
            "rows": float(seen),
            "images_per_s": seen / (time.perf_counter() - started),
        }
        history.append(stats)
        log.info("epoch %d/%d: triplet loss %.4f, %.0f images/s", epoch + 1, settings.epochs, stats["loss"],
                 stats["images_per_s"])  # fmt: skip
    return history


@torch.no_grad()
def evaluate_embedder(
    model: Embedder, url: str, prep: Preprocessing, device: torch.device, batch_size: int = 256
) -> dict[str, float]:
    """recall@1 by cosine nearest neighbour (itself excluded) over every row of the table at ``url``: the share of
    rows whose most similar other row has the same label."""
    model.to(device).eval()
    vectors, labels = [], []
    with table_loader(url, prep, batch_size, shuffle=False) as loader:
        for batch in loader:
            vectors.append(model(batch["pixels"].to(device))["vectors"].cpu())
            labels.append(batch["label"])
    if not vectors:
        raise ValueError(f"no rows to evaluate in {url}")
    return {"recall_at_1": recall_at_1(torch.cat(vectors), torch.cat(labels)), "rows": float(sum(map(len, labels)))}


def recall_at_1(vectors: torch.Tensor, labels: torch.Tensor, chunk: int = 2048) -> float:
    """Share of rows whose nearest other row by cosine (unit vectors [N, D]) has the same label [N]."""
    hits = 0
    for start in range(0, len(vectors), chunk):
        similarity = vectors[start : start + chunk] @ vectors.T
        rows = torch.arange(start, min(start + chunk, len(vectors)))
        similarity[rows - start, rows] = float("-inf")
        hits += (labels[similarity.argmax(dim=1)] == labels[rows]).sum().item()
    return hits / len(vectors)
