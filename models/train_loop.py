"""Training and evaluation loops for the classifier; Spark-free (data arrives as petastorm table URLs).

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


def train_classifier(
    model: Classifier, train_url: str, prep: Preprocessing, settings: TrainSettings, device: torch.device
) -> list[dict[str, float]]:
    """Train in place on the table at ``train_url``; returns per-epoch {loss, accuracy, images_per_s}."""
    seed_everything(settings.seed)
    model.to(device).train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=settings.epochs)
    amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    history = []
    for epoch in range(settings.epochs):
        started, seen, correct, total_loss = time.perf_counter(), 0, 0, 0.0
        with table_loader(
            train_url, prep, settings.batch_size, seed=settings.seed + epoch, workers=settings.workers
        ) as loader:
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
                seen += len(labels)
                total_loss += loss.item() * len(labels)
                correct += (logits.argmax(1) == labels).sum().item()
        scheduler.step()
        seconds = time.perf_counter() - started
        stats = {"loss": total_loss / max(seen, 1), "accuracy": correct / max(seen, 1), "images_per_s": seen / seconds}
        history.append(stats)
        log.info(
            "epoch %d/%d: loss %.4f, train accuracy %.4f, %.0f images/s",
            epoch + 1, settings.epochs, stats["loss"], stats["accuracy"], stats["images_per_s"],
        )  # fmt: skip
    return history


@torch.no_grad()
def evaluate_classifier(
    model: Classifier, url: str, prep: Preprocessing, device: torch.device, batch_size: int = 256
) -> dict[str, float]:
    """Accuracy and mean loss over every row of the table at ``url``."""
    model.to(device).eval()
    seen, correct, total_loss = 0, 0, 0.0
    with table_loader(url, prep, batch_size, shuffle=False) as loader:
        for batch in loader:
            images, labels = batch["pixels"].to(device), batch["label"].to(device)
            logits = model(images)["logits"]
            total_loss += model.loss(logits, labels).item() * len(labels)
            correct += (logits.argmax(1) == labels).sum().item()
            seen += len(labels)
    if seen == 0:
        raise ValueError(f"no rows to evaluate in {url}")
    return {"accuracy": correct / seen, "loss": total_loss / seen, "rows": float(seen)}
