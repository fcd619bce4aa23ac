"""Building blocks shared by the lakelens models."""

from __future__ import annotations

import torch
from torch import nn


class ConvBlock(nn.Module):
    """Two 3x3 conv + batch-norm + ReLU layers; with ``downsample`` the first one has stride 2 (H, W halve)."""

    def __init__(self, in_channels: int, out_channels: int, downsample: bool = False) -> None:
        super().__init__()
        stride = 2 if downsample else 1
        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [N, C_in, H, W] -> [N, C_out, H', W'] (H' = H / 2 when downsampling)."""
        return self.layers(x)


def downsampling_stages(in_channels: int, widths: tuple[int, ...]) -> tuple[nn.Sequential, int]:
    """ConvBlocks that each halve H and W, one per width; returns them and their output channels."""
    stages, channels = [], in_channels
    for width in widths:
        stages.append(ConvBlock(channels, width, downsample=True))
        channels = width
    return nn.Sequential(*stages), channels
