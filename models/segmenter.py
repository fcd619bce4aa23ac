"""Segmenter: a small fully-convolutional U-Net with a class head and an edge head, both at input resolution.

Shapes: images float32 [N, C, H, W] (normalised; H and W multiples of 2 ** depth, depth = len(widths) - 1, so 8
with the default widths) -> {"logits": float32 [N, K, H, W] (K classes, 0 the background), "edges": float32
[N, H, W] (logit that a pixel lies on a border between classes)}. :func:`segmentation_loss` trains both heads; the
edge head makes the shared decoder features locate borders, which keeps the masks' edges sharp.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from models.backbones import Backbone, rgb_only
from models.blocks import ConvBlock, downsampling_stages
from models.masks import mask_boundaries


class Segmenter(nn.Module):
    """U-Net: a full-resolution stem, conv stages that halve H and W, then per stage a transposed convolution that
    doubles them and a ConvBlock over its output concatenated with the encoder features of the same resolution.

    Args:
        num_classes: mask classes, background (0) included.
        in_channels: 1 for gray images, 3 for RGB.
        widths: channels at each resolution, full resolution first; len(widths) - 1 halvings.
        backbone: a pretrained architecture (``models.backbones``: mobilenet_v2, efficientnet_lite0) whose maps at
            strides 2 to 32 replace the halving stages (only ``widths[0]``, the full-resolution stem, is used;
            H and W then multiples of 32).
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        widths: tuple[int, ...] = (16, 32, 64, 128),
        backbone: str | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 (background and at least one class), got {num_classes}")
        if len(widths) < 2:
            raise ValueError(f"widths needs at least two resolutions, got {widths}")
        self.num_classes = num_classes
        self.backbone: Backbone | None = None
        if backbone is None:
            self.down, _ = downsampling_stages(widths[0], tuple(widths[1:]))
        else:
            rgb_only(backbone, in_channels)
            self.backbone = Backbone(backbone)
            widths = (widths[0], *self.backbone.channels)
        self.depth = len(widths) - 1
        self.stem = ConvBlock(in_channels, widths[0])
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(wide, narrow, 2, stride=2) for narrow, wide in zip(widths[:-1], widths[1:], strict=True)
        )
        self.merge = nn.ModuleList(ConvBlock(2 * narrow, narrow) for narrow in widths[:-1])
        self.classes = nn.Conv2d(widths[0], num_classes, 1)
        self.edges = nn.Conv2d(widths[0], 1, 1)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """images [N, C, H, W] -> {"logits": [N, K, H, W], "edges": [N, H, W]}; H, W multiples of 2 ** depth."""
        side = 2**self.depth
        if images.shape[-2] % side or images.shape[-1] % side:
            raise ValueError(f"image sides must be multiples of {side}, got {tuple(images.shape[-2:])}")
        skips = [self.stem(images)]
        if self.backbone is None:
            for stage in self.down:
                skips.append(stage(skips[-1]))
        else:
            skips += self.backbone(images)
        x = skips.pop()
        for up, merge in zip(reversed(self.up), reversed(self.merge), strict=True):
            x = merge(torch.cat([up(x), skips.pop()], dim=1))
        return {"logits": self.classes(x), "edges": self.edges(x).squeeze(1)}

    @torch.no_grad()
    def predict_masks(self, images: torch.Tensor) -> torch.Tensor:
        """images float32 [N, C, H, W] -> class ids int64 [N, H, W] (the most likely class per pixel)."""
        return self(images)["logits"].argmax(dim=1)


def segmentation_loss(outputs: dict[str, torch.Tensor], masks: torch.Tensor, edge_weight: float = 0.5) -> torch.Tensor:
    """Per-pixel cross-entropy on the classes plus ``edge_weight`` x binary cross-entropy of the edge head.

    Border pixels are few, so the edge term weighs them up by the ratio of inner to border pixels in the batch.

    Args:
        outputs: a :class:`Segmenter`'s forward outputs, "logits" [N, K, H, W] and "edges" [N, H, W].
        masks: class ids int64 [N, H, W].
    """
    classes = F.cross_entropy(outputs["logits"].float(), masks)
    borders = mask_boundaries(masks).float()
    share = borders.mean().clamp(min=1e-3)
    edges = F.binary_cross_entropy_with_logits(
        outputs["edges"].float(), borders, pos_weight=((1 - share) / share).detach()
    )
    return classes + edge_weight * edges
