"""Image classifier: a small CNN (or a pretrained backbone) with a single-label (softmax) or a multi-label
(sigmoid) head.

Shapes: images float32 [N, C, H, W] (normalised) -> logits [N, num_classes]. ``forward`` returns named outputs.
"""

from __future__ import annotations

import torch
from torch import nn

from models.backbones import encoder


class Classifier(nn.Module):
    """Conv stages that halve the resolution, global average pooling, then one linear head.

    Args:
        num_classes: outputs of the head.
        in_channels: 1 for gray images, 3 for RGB.
        widths: channels of each conv stage (each stage halves H and W).
        multi_label: sigmoid scores per class (several labels per image) instead of a softmax over classes.
        dropout: before the head.
        backbone: a pretrained architecture (``models.backbones``: mobilenet_v2, efficientnet_lite0) whose layers
            replace the conv stages (``widths`` is then unused).
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        widths: tuple[int, ...] = (32, 64, 128),
        multi_label: bool = False,
        dropout: float = 0.2,
        backbone: str | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.features, channels = encoder(in_channels, tuple(widths), backbone)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(channels, num_classes))
        self.multi_label = multi_label

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """images [N, C, H, W] -> {"logits": [N, K], "scores": [N, K]} (softmax, or sigmoid if multi-label)."""
        pooled = self.features(images).mean(dim=(2, 3), keepdim=True)
        logits = self.head(pooled)
        scores = torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, dim=1)
        return {"logits": logits, "scores": scores}

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Cross-entropy on class ids [N] (single-label) or binary cross-entropy on 0/1 targets [N, K]."""
        if self.multi_label:
            return nn.functional.binary_cross_entropy_with_logits(logits, targets.float())
        return nn.functional.cross_entropy(logits, targets.long())
