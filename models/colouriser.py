"""Colourisers: a grey image's lightness in, a distribution over chroma bins per pixel out (``models.colour``).

Two fully convolutional architectures, compared in bench/colourise.py:

- :class:`HypercolumnColouriser`: the activations of every stage of a CNN (its own conv stages, or a pretrained
  photo backbone) upsampled to the image size and concatenated, so that each pixel's chroma is predicted from its
  column of features, from edges to objects (Hariharan et al. 2015; Larsson et al. 2016). The columns are wide
  (240 channels with the own stages, 1,448 with MobileNetV2) at full size: memory grows with them.
- :class:`ResidualColouriser`: a U-Net whose skip connections add the encoder's map to the upsampled decoder map
  (each projected to the decoder's width) instead of concatenating it: no stack of wide maps at full size.

Shapes: lightness float32 [N, 1, H, W], CIE L in [0, 100] (H and W multiples of :attr:`side`) -> logits float32
[N, AB_BINS, H, W]. The rebalancing weights of the bins the model was trained with (``weights`` [AB_BINS]) travel in
its state, so that its loss can be computed again from its file.

Example:
    >>> model = ResidualColouriser()
    >>> rgb = recombine(lightness, annealed_mean(model(lightness)))     # [N, 3, H, W]
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from models.backbones import LEVEL_CHANNELS, STRIDE, Backbone
from models.blocks import ConvBlock, downsampling_stages
from models.colour import AB_BINS, grey_from_lightness
from models.pretrained import preprocessing


class _Encoder(nn.Module):
    """The maps of every stage of the own conv stages (grey in) or of a pretrained backbone (grey as RGB in), from
    the finest: own [N, widths[i], H / 2**i, W / 2**i]; backbone five maps at strides 2 to 32."""

    def __init__(self, widths: tuple[int, ...], backbone: str | None) -> None:
        super().__init__()
        if len(widths) < 2:
            raise ValueError(f"widths needs at least two resolutions, got {widths}")
        self.backbone = Backbone(backbone) if backbone else None
        if self.backbone is None:
            self.stem = ConvBlock(1, widths[0])
            self.down, _ = downsampling_stages(widths[0], tuple(widths[1:]))
            self.channels = tuple(widths)
            self.side = 2 ** (len(widths) - 1)
        else:
            prep = preprocessing(backbone)
            self.register_buffer("mean", torch.tensor(prep.mean).view(1, 3, 1, 1), persistent=False)
            self.register_buffer("std", torch.tensor(prep.std).view(1, 3, 1, 1), persistent=False)
            self.channels = LEVEL_CHANNELS[backbone]
            self.side = STRIDE

    def forward(self, lightness: torch.Tensor) -> list[torch.Tensor]:
        side = self.side
        if lightness.shape[-2] % side or lightness.shape[-1] % side:
            raise ValueError(f"image sides must be multiples of {side}, got {tuple(lightness.shape[-2:])}")
        grey = grey_from_lightness(lightness)
        if self.backbone is not None:
            return self.backbone((grey.expand(-1, 3, -1, -1) - self.mean) / self.std)
        maps = [self.stem((grey - 0.5) / 0.25)]
        for stage in self.down:
            maps.append(stage(maps[-1]))
        return maps


class HypercolumnColouriser(nn.Module):
    """Per pixel, the column of every encoder stage's activations (upsampled bilinearly to the image size), through
    a per-pixel MLP (1 x 1 convolutions) to the chroma bins.

    Args:
        widths: the own conv stages' channels, full resolution first (ignored with ``backbone``).
        backbone: a pretrained architecture (``models.backbones``) as the encoder, grey replicated to RGB.
        hidden: the per-pixel MLP's width.
    """

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 128), backbone: str | None = None,
                 hidden: int = 128) -> None:  # fmt: skip
        super().__init__()
        self.encoder = _Encoder(tuple(widths), backbone)
        self.head = nn.Sequential(
            nn.Conv2d(sum(self.encoder.channels), hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, AB_BINS, 1),
        )
        self.register_buffer("weights", torch.ones(AB_BINS))

    @property
    def side(self) -> int:
        return self.encoder.side

    def forward(self, lightness: torch.Tensor) -> torch.Tensor:
        """lightness [N, 1, H, W] -> bin logits [N, AB_BINS, H, W]."""
        size = lightness.shape[-2:]
        maps = self.encoder(lightness)
        columns = [m if m.shape[-2:] == size else F.interpolate(m, size=size, mode="bilinear", align_corners=False)
                   for m in maps]  # fmt: skip
        return self.head(torch.cat(columns, dim=1))


class ResidualColouriser(nn.Module):
    """U-Net with additive skips: from the coarsest map up, each step doubles H and W (transposed convolution to the
    finer stage's width), adds the finer encoder map, and refines the sum with a ConvBlock. A backbone's finest map
    is at stride 2: one more step up, with no skip, reaches full size. A 1 x 1 convolution gives the chroma bins.

    Args:
        widths: the own conv stages' channels, full resolution first (ignored with ``backbone``).
        backbone: a pretrained architecture (``models.backbones``) as the encoder, grey replicated to RGB.
    """

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 128), backbone: str | None = None) -> None:
        super().__init__()
        self.encoder = _Encoder(tuple(widths), backbone)
        # The decoder's width at each stage: the encoder's, capped (a backbone's last map has 1,280 channels).
        decoder = [min(c, 256) for c in self.encoder.channels]
        self.project = nn.ModuleList(nn.Conv2d(c, d, 1) if c != d else nn.Identity()
                                     for c, d in zip(self.encoder.channels, decoder, strict=True))  # fmt: skip
        self.up = nn.ModuleList(nn.ConvTranspose2d(wide, narrow, 2, stride=2)
                                for narrow, wide in zip(decoder[:-1], decoder[1:], strict=True))  # fmt: skip
        self.refine = nn.ModuleList(ConvBlock(d, d) for d in decoder[:-1])
        last = decoder[0]
        self.to_full = None
        if backbone is not None:
            self.to_full = nn.Sequential(nn.ConvTranspose2d(last, 16, 2, stride=2), ConvBlock(16, 16))
            last = 16
        self.bins = nn.Conv2d(last, AB_BINS, 1)
        self.register_buffer("weights", torch.ones(AB_BINS))

    @property
    def side(self) -> int:
        return self.encoder.side

    def forward(self, lightness: torch.Tensor) -> torch.Tensor:
        """lightness [N, 1, H, W] -> bin logits [N, AB_BINS, H, W]."""
        skips = [project(m) for project, m in zip(self.project, self.encoder(lightness), strict=True)]
        x = skips.pop()
        for up, refine in zip(reversed(self.up), reversed(self.refine), strict=True):
            x = refine(up(x) + skips.pop())
        return self.bins(x if self.to_full is None else self.to_full(x))
