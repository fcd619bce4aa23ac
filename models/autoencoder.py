"""A convolutional autoencoder: image -> compact code -> image (the ``autoencode`` task).

The encoder is the conv stages of the other scene models (each halves the image), then the last map averaged to a
4 x 4 grid and projected to the code; the decoder projects the code back to that grid and upsamples it stage by
stage to the input's size. What the code cannot hold shows in the reconstruction's error: images unlike those the
model learned from reconstruct worst, so the error ranks a lake's odd images first.

The denoising variant (``noise`` > 0) adds Gaussian noise of that standard deviation (in the input's normalised
units) to its input while training only: it learns to give back the clean image, which makes the code keep
structure rather than pixel noise.

Shapes: pixels float32 [N, C, H, W] as ``models.data.Preprocessing`` normalises them (H and W multiples of 2 **
len(widths[1:])) -> {"vectors": the code float32 [N, code_dim], "reconstruction": float32 [N, C, H, W] in the same
normalised units}. "vectors", as the embedders name theirs: the embed task can run an autoencoder too.

Example:
    >>> out = ConvAutoencoder(code_dim=64)(pixels)
    >>> out["vectors"].shape, out["reconstruction"].shape
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from models.blocks import ConvBlock, downsampling_stages

# The side of the grid the encoder's last map is averaged to before the code, and the decoder starts from.
GRID = 4


class ConvAutoencoder(nn.Module):
    """Args:
    code_dim: the code's length.
    in_channels: 3 (RGB) or 1 (grey).
    widths: the conv stages' channels, full resolution first.
    noise: the denoising variant's training noise (standard deviation, normalised units); 0 for a plain one.
    """

    def __init__(self, code_dim: int = 64, in_channels: int = 3, widths: tuple[int, ...] = (16, 32, 64, 96),
                 noise: float = 0.0) -> None:  # fmt: skip
        super().__init__()
        if len(widths) < 2 or code_dim < 1 or noise < 0:
            raise ValueError(
                f"need two widths or more, code_dim >= 1 and noise >= 0; got {widths}, {code_dim}, {noise}"
            )
        self.noise = float(noise)
        self.side = 2 ** (len(widths) - 1)
        self.stem = ConvBlock(in_channels, widths[0])
        self.down, deepest = downsampling_stages(widths[0], tuple(widths[1:]))
        self.deepest = deepest
        self.squeeze = nn.Conv2d(deepest, 16, 1)
        self.to_code = nn.Linear(16 * GRID * GRID, code_dim)
        self.from_code = nn.Linear(code_dim, deepest * GRID * GRID)
        ups = list(reversed(widths))
        self.up = nn.ModuleList(ConvBlock(a, b) for a, b in zip(ups[:-1], ups[1:], strict=True))
        self.head = nn.Conv2d(widths[0], in_channels, 1)

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels [N, C, H, W] -> code [N, code_dim] (not normalised)."""
        if pixels.shape[-2] % self.side or pixels.shape[-1] % self.side:
            raise ValueError(f"image sides must be multiples of {self.side}, got {tuple(pixels.shape[-2:])}")
        deepest = self.down(self.stem(pixels))
        grid = F.adaptive_avg_pool2d(self.squeeze(deepest), GRID)
        return self.to_code(grid.flatten(1))

    def decode(self, code: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """code [N, code_dim] -> reconstruction [N, C, *size]."""
        x = F.relu(self.from_code(code)).view(len(code), self.deepest, GRID, GRID)
        for i, block in enumerate(self.up):  # at a quarter, a half, ... of the size: the last block at full size
            scale = 2 ** (len(self.up) - 1 - i)
            x = block(F.interpolate(x, size=(size[0] // scale, size[1] // scale), mode="bilinear"))
        return self.head(x)

    def forward(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        seen = pixels
        if self.training and self.noise:
            seen = pixels + self.noise * torch.randn_like(pixels)
        code = self.encode(seen)
        return {"vectors": code, "reconstruction": self.decode(code, (pixels.shape[-2], pixels.shape[-1]))}
