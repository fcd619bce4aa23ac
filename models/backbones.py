"""A pretrained ImageNet network's convolutional layers as the encoder of this project's models (transfer learning).

Each of the five models (classifier, embedder, detector, segmenter, captioner) takes ``backbone=NAME`` in its
architecture arguments: its own small conv stages are then replaced by the layers of MobileNetV2 or
EfficientNet-Lite0 (their heads left out), which ``jobs.train --backbone`` fills with a registered model's ImageNet
weights before training. The weights then travel in the trained model's own safetensors file, so that annotating
with it needs nothing else.

Batch norm keeps the statistics the backbone was trained with, in training too: the batches of a few hundred
photos would replace ImageNet's mean and variance with noisier ones (detection backbones are trained this way).

Shapes: images float32 [N, 3, H, W], normalised as the weights were trained (``models.pretrained.preprocessing``),
H and W multiples of 32 -> five feature maps, at strides 2, 4, 8, 16 and 32: [N, C_i, H / s_i, W / s_i] with C_i
:data:`LEVEL_CHANNELS` ``[name][i]``.

Example:
    >>> backbone = Backbone("mobilenet_v2")
    >>> backbone.load_pretrained(imagenet_state_dict)        # the registry entry of mobilenet-v2-imagenet
    >>> [m.shape[1] for m in backbone(torch.zeros(1, 3, 224, 224))]
    [16, 24, 32, 96, 1280]
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from models.blocks import downsampling_stages
from models.efficientnet_lite import EfficientNetLite0
from models.mobilenet_v2 import MobileNetV2

# Channels of the maps at strides 2, 4, 8, 16, 32: each the last block at that stride (the stride-32 one is the
# 1x1 conv to 1280 channels the ImageNet head pooled).
LEVEL_CHANNELS: dict[str, tuple[int, ...]] = {
    "mobilenet_v2": (16, 24, 32, 96, 1280),
    "efficientnet_lite0": (16, 24, 40, 112, 1280),
}
# MobileNetV2: the index in ``features`` after which each level's map is taken.
_MOBILENET_LEVELS = (1, 3, 6, 13, 18)
# EfficientNet-Lite0: the index in ``_blocks`` after which each of the first four levels' maps is taken.
_LITE0_LEVELS = (0, 2, 4, 10)
# Parameters of the ImageNet heads, which a backbone leaves out.
_HEADS = {"mobilenet_v2": ("classifier.",), "efficientnet_lite0": ("_fc.",)}
STRIDE = 32


class Backbone(nn.Module):
    """The convolutional layers of a pretrained architecture (``mobilenet_v2`` or ``efficientnet_lite0``), giving
    the feature map at each stride.

    Args:
        name: the architecture, a key of :data:`LEVEL_CHANNELS`.
    """

    def __init__(self, name: str) -> None:
        super().__init__()
        if name not in LEVEL_CHANNELS:
            raise ValueError(f"unknown backbone {name!r}; known: {', '.join(LEVEL_CHANNELS)}")
        self.name = name
        self.channels = LEVEL_CHANNELS[name]
        if name == "mobilenet_v2":
            net: nn.Module = MobileNetV2()
            del net.classifier
        else:
            net = EfficientNetLite0()
            del net._fc, net._dropout
        self.net = net

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """images [N, 3, H, W] -> the maps at strides 2, 4, 8, 16, 32 (H, W multiples of 32)."""
        if images.shape[-2] % STRIDE or images.shape[-1] % STRIDE:
            raise ValueError(f"a backbone's input sides must be multiples of {STRIDE}, got {tuple(images.shape[-2:])}")
        return self._mobilenet(images) if self.name == "mobilenet_v2" else self._lite0(images)

    def _mobilenet(self, x: torch.Tensor) -> list[torch.Tensor]:
        levels = []
        for i, layer in enumerate(self.net.features):
            x = layer(x)
            if i in _MOBILENET_LEVELS:
                levels.append(x)
        return levels

    def _lite0(self, x: torch.Tensor) -> list[torch.Tensor]:
        net, levels = self.net, []
        x = F.relu6(net._bn0(net._conv_stem(x)))
        for i, block in enumerate(net._blocks):
            x = block(x)
            if i in _LITE0_LEVELS:
                levels.append(x)
        levels.append(F.relu6(net._bn1(net._conv_head(x))))
        return levels

    def train(self, mode: bool = True) -> Backbone:
        """Train mode for the layers, with every batch norm kept in eval mode (its ImageNet statistics)."""
        super().train(mode)
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eval()
        return self

    def load_pretrained(self, state: dict[str, torch.Tensor]) -> None:
        """Load the state dict of the whole pretrained network (a registry entry of this architecture, ImageNet
        head included), strictly: every backbone parameter must be there with its shape.

        Raises:
            ValueError: the state dict is not one of this architecture.
        """
        kept = {k: v for k, v in state.items() if not k.startswith(_HEADS[self.name])}
        try:
            self.net.load_state_dict(kept, strict=True)
        except RuntimeError as exc:
            raise ValueError(f"the weights are not those of a {self.name}: {str(exc).splitlines()[0]}") from exc


class LastMap(nn.Module):
    """A backbone giving only its last (stride-32) map: the encoder of the models that pool it."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.backbone = Backbone(name)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images [N, 3, H, W] -> [N, C, H / 32, W / 32] (C = the backbone's last level's channels)."""
        return self.backbone(images)[-1]


def encoder(in_channels: int, widths: tuple[int, ...], backbone: str | None) -> tuple[nn.Module, int]:
    """A model's conv stages and their output channels: its own stages that halve H and W once per width, or, when
    ``backbone`` names one, the pretrained backbone's layers (its stride-32 map).

    Raises:
        ValueError: a backbone with other than 3 input channels (they were trained on RGB).
    """
    if backbone is None:
        return downsampling_stages(in_channels, tuple(widths))
    rgb_only(backbone, in_channels)
    return LastMap(backbone), LEVEL_CHANNELS[backbone][-1]


def rgb_only(backbone: str, in_channels: int) -> None:
    """Refuse a backbone with other than 3 input channels: the weights were trained on RGB."""
    if in_channels != 3:
        raise ValueError(f"a pretrained backbone ({backbone}) takes RGB input (in_channels 3), got {in_channels}")


def find_backbone(model: nn.Module) -> Backbone | None:
    """The pretrained backbone inside ``model``, or None for a model with its own conv stages."""
    return next((m for m in model.modules() if isinstance(m, Backbone)), None)
