"""Training and evaluation of the colourisers on lake snapshots, self-supervised: each image is its own target (its
lightness in, its chroma to learn); Spark-free.

The bins' rebalancing weights (``models.colour.rebalancing_weights``) come from the chroma of the first batches of
the training snapshot and are kept in the model (its ``weights`` buffer). CUDA with mixed precision when present,
the CPU otherwise; seeds fixed; one log line per epoch.
"""

from __future__ import annotations

import itertools

import torch

from models.colour import (
    AB_BINS,
    annealed_mean,
    colour_loss,
    colourfulness,
    lab_to_rgb,
    nearest_bins,
    psnr,
    rebalancing_weights,
    rgb_to_lab,
)
from models.data import NoTargets, Preprocessing, table_loader
from models.train_loop import TrainSettings, train_on_images

# Batches of the training snapshot whose chroma sets the bins' weights.
COUNT_BATCHES = 20


def colour_input(prep: Preprocessing) -> Preprocessing:
    """The snapshot's images as the colourisers learn from them: RGB in [0, 1] at the model's size (the model takes
    their lightness; the chroma is the target)."""
    return Preprocessing(prep.size, 3, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


def chroma_counts(url: str, prep: Preprocessing, batch_size: int, batches: int = COUNT_BATCHES) -> torch.Tensor:
    """float32 [AB_BINS]: how many pixels of the first ``batches`` batches fall nearest each chroma bin."""
    counts = torch.zeros(AB_BINS)
    with table_loader(url, colour_input(prep), batch_size, NoTargets(), shuffle=False) as loader:
        for batch in itertools.islice(loader, batches):
            chroma = rgb_to_lab(batch["pixels"])[:, 1:]
            counts += torch.bincount(nearest_bins(chroma)[0][:, 0].flatten(), minlength=AB_BINS).float()
    return counts


def train_colouriser(
    model: torch.nn.Module, train_url: str, prep: Preprocessing, settings: TrainSettings, device: torch.device
) -> list[dict[str, float]]:
    """Train in place on the images of the table at ``train_url`` at the input size ``prep.size``; returns per epoch
    {loss, rows, images_per_s}."""
    model.weights.copy_(rebalancing_weights(chroma_counts(train_url, prep, settings.batch_size)))

    def loss_of(net: torch.nn.Module, rgb: torch.Tensor) -> torch.Tensor:
        with torch.autocast(rgb.device.type, enabled=False):  # the colour space in float32 under mixed precision
            lab = rgb_to_lab(rgb.float())
        return colour_loss(net(lab[:, :1]), lab[:, 1:], net.weights)

    return train_on_images(model, train_url, colour_input(prep), settings, device, loss_of, "colour")


@torch.no_grad()
def evaluate_colouriser(
    model: torch.nn.Module, url: str, prep: Preprocessing, device: torch.device, batch_size: int = 64
) -> dict[str, float]:
    """Over every image of the table at ``url``, turned grey and coloured again at the model's input size: mean
    "psnr" against the original (dB), "grey_psnr" of the grey image itself (the floor), "colourfulness" of the
    output beside "true_colourfulness" of the originals and "grey_colourfulness" (0), "loss", and "rows"."""
    model.to(device).eval()
    sums = dict.fromkeys(("psnr", "grey_psnr", "colourfulness", "true_colourfulness", "loss"), 0.0)
    seen = 0
    with table_loader(url, colour_input(prep), batch_size, NoTargets(), shuffle=False) as loader:
        for batch in loader:
            rgb = batch["pixels"].to(device)
            lab = rgb_to_lab(rgb)
            logits = model(lab[:, :1])
            coloured = lab_to_rgb(torch.cat([lab[:, :1], annealed_mean(logits)], dim=1))
            grey = lab_to_rgb(torch.cat([lab[:, :1], torch.zeros_like(lab[:, 1:])], dim=1))
            sums["psnr"] += float(psnr(coloured, rgb).sum())
            sums["grey_psnr"] += float(psnr(grey, rgb).sum())
            sums["colourfulness"] += float(colourfulness(coloured).sum())
            sums["true_colourfulness"] += float(colourfulness(rgb).sum())
            sums["loss"] += colour_loss(logits, lab[:, 1:], model.weights).item() * len(rgb)
            seen += len(rgb)
    if not seen:
        raise ValueError(f"no rows to score in {url}")
    return {**{k: v / seen for k, v in sums.items()}, "rows": float(seen)}
