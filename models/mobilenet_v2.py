"""MobileNetV2 (width 1.0, Sandler et al., CVPR 2018) in pure torch, with torchvision's parameter names, so that
torchvision's ImageNet-1k state dict (see ``models.pretrained``) loads into it with ``strict=True``.

Shapes: images float32 [N, 3, H, W] (ImageNet-normalised, 224 x 224 for the pretrained weights; any H, W >= 32)
-> logits [N, num_classes], features [N, 1280]. ``forward`` returns named outputs. The model also runs with
``model.to(memory_format=torch.channels_last)`` on channels-last input: nothing in it views or reshapes a
feature map.
"""

from __future__ import annotations

import torch
from torch import nn

# (expansion t, output channels c, repeats n, stride of the first repeat s), the paper's Table 2.
INVERTED_RESIDUALS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
STEM_CHANNELS = 32
FEATURE_CHANNELS = 1280


def conv_bn_relu6(
    in_channels: int, out_channels: int, kernel: int = 1, stride: int = 1, groups: int = 1
) -> nn.Sequential:
    """Conv (no bias), batch norm, ReLU6 as ``[0]``, ``[1]``, ``[2]``: torchvision's ``Conv2dNormActivation``
    layout, which fixes the parameter names ``<i>.0.weight`` and ``<i>.1.running_mean``."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """1x1 expansion (unless t = 1), 3x3 depthwise conv, linear 1x1 projection; the input is added back when the
    shape stays the same (stride 1, equal channels).

    Args:
        in_channels, out_channels: channels in and out.
        stride: 1, or 2 to halve H and W.
        expansion: hidden channels = in_channels * expansion.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        hidden = in_channels * expansion
        layers: list[nn.Module] = [conv_bn_relu6(in_channels, hidden)] if expansion != 1 else []
        layers += [
            conv_bn_relu6(hidden, hidden, kernel=3, stride=stride, groups=hidden),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [N, C_in, H, W] -> [N, C_out, H', W'] (H' = ceil(H / stride))."""
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 at width 1.0: a stride-2 stem, 17 inverted residual blocks, a 1x1 conv to 1280 channels,
    global average pooling, dropout and a linear head (``features.*`` and ``classifier.1.*`` as in torchvision).

    Args:
        num_classes: outputs of the head (1000 for the ImageNet weights).
        dropout: before the head (active in training only).
    """

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        layers: list[nn.Module] = [conv_bn_relu6(3, STEM_CHANNELS, kernel=3, stride=2)]
        channels = STEM_CHANNELS
        for expansion, out_channels, repeats, stride in INVERTED_RESIDUALS:
            for i in range(repeats):
                layers.append(InvertedResidual(channels, out_channels, stride if i == 0 else 1, expansion))
                channels = out_channels
        layers.append(conv_bn_relu6(channels, FEATURE_CHANNELS))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(FEATURE_CHANNELS, num_classes))

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """images [N, 3, H, W] -> {"logits": [N, K], "scores": softmax [N, K], "features": pooled [N, 1280],
        "vectors": the features at unit length [N, 1280] (for similar-image search)}."""
        # mean over H, W rather than pooling then view(): it works on channels-last maps as they are
        features = self.features(images).mean(dim=(2, 3))
        logits = self.classifier(features)
        vectors = nn.functional.normalize(features, dim=1)
        return {"logits": logits, "scores": torch.softmax(logits, dim=1), "features": features, "vectors": vectors}
