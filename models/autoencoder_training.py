"""Training and evaluation of the autoencoder on lake snapshots, self-supervised: each image is its own target (the
denoising variant sees it with noise and learns to give it back clean); Spark-free.

The loss is the mean squared error of the reconstruction in the input's normalised units. CUDA with mixed
precision when present, the CPU otherwise; seeds fixed; one log line per epoch.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from models.colour import psnr
from models.data import NoTargets, Preprocessing, table_loader, to_unit_pixels
from models.train_loop import TrainSettings, train_on_images


def train_autoencoder(
    model: torch.nn.Module, train_url: str, prep: Preprocessing, settings: TrainSettings, device: torch.device
) -> list[dict[str, float]]:
    """Train in place on the images of the table at ``train_url``; returns per epoch {loss, rows, images_per_s}."""

    def loss_of(net: torch.nn.Module, pixels: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(net(pixels)["reconstruction"].float(), pixels)

    return train_on_images(model, train_url, prep, settings, device, loss_of, "reconstruction")


@torch.no_grad()
def evaluate_autoencoder(
    model: torch.nn.Module, url: str, prep: Preprocessing, device: torch.device, batch_size: int = 64
) -> dict[str, float]:
    """Over every image of the table at ``url``: mean "psnr" (dB) of the reconstruction against the image in [0, 1],
    "loss" (as in training, without the denoising noise), and "rows"."""
    model.to(device).eval()
    sums, seen = {"psnr": 0.0, "loss": 0.0}, 0
    with table_loader(url, prep, batch_size, NoTargets(), shuffle=False) as loader:
        for batch in loader:
            pixels = batch["pixels"].to(device)
            reconstruction = model(pixels)["reconstruction"]
            sums["psnr"] += float(psnr(to_unit_pixels(reconstruction, prep), to_unit_pixels(pixels, prep)).sum())
            sums["loss"] += F.mse_loss(reconstruction, pixels).item() * len(pixels)
            seen += len(pixels)
    if not seen:
        raise ValueError(f"no rows to score in {url}")
    return {**{k: v / seen for k, v in sums.items()}, "rows": float(seen)}
