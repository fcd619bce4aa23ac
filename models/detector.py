"""Object detector: a small single-stage CNN (SSD / RetinaNet-lite) that scores and refines square anchors.

Shapes: images float32 [N, C, H, W] (normalised; H, W best multiples of 8) -> per anchor, A = (H / 8) * (W / 8) *
len(anchor_sizes): class logits [N, A, num_classes + 1] (index 0 = background) and box deltas [N, A, 4].
:meth:`Detector.detect` turns them into boxes per image.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from models.backbones import Backbone, rgb_only
from models.blocks import ConvBlock, downsampling_stages
from models.boxes import batched_nms, cxcywh_to_xyxy, decode_deltas, grid_anchors, xyxy_to_xywh

# Share of anchors an untrained head calls foreground: a small prior keeps the many background anchors from
# swamping the first steps (RetinaNet's initialisation).
FOREGROUND_PRIOR = 0.01
# Candidates kept per image before NMS, the best-scoring (anchor, class) pairs.
CANDIDATES_BEFORE_NMS = 1000


class Detector(nn.Module):
    """Conv stages down to stride 8, context from a stride-16 stage added back, then a shared head that gives,
    at every cell of the stride-8 map and for every anchor size, class logits and (dx, dy, dw, dh).

    Args:
        num_classes: object classes (background is extra, at logit index 0).
        in_channels: 1 for gray images, 3 for RGB.
        widths: channels of the conv stages, each halving H and W; the last stage gives context at stride
            2 ** len(widths), the one before it the stride of the anchor grid.
        anchor_sizes: sides of the square anchors at each cell, as fractions of the image side (so the same
            model fits any input resolution).
        head_width: channels of the head's hidden conv.
        backbone: a pretrained architecture (``models.backbones``: mobilenet_v2, efficientnet_lite0) whose maps at
            strides 8, 16 and 32, each projected to ``head_width`` channels and the coarser ones added to the
            stride-8 one (a feature pyramid's top-down path), replace the conv stages (``widths`` is then unused).
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        widths: tuple[int, ...] = (16, 32, 64, 128),
        anchor_sizes: tuple[float, ...] = (0.1, 0.2, 0.4),
        head_width: int = 64,
        backbone: str | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if len(widths) < 2 or not anchor_sizes or min(anchor_sizes) <= 0:
            raise ValueError(f"need >= 2 widths and positive anchor sizes, got {widths} and {anchor_sizes}")
        self.num_classes = num_classes
        self.anchor_sizes = tuple(float(s) for s in anchor_sizes)
        self.backbone: Backbone | None = None
        if backbone is None:
            self.features, channels = downsampling_stages(in_channels, tuple(widths[:-1]))
            self.context = ConvBlock(channels, widths[-1], downsample=True)
            self.lateral = nn.Conv2d(widths[-1], channels, 1)
        else:
            rgb_only(backbone, in_channels)
            self.backbone, channels = Backbone(backbone), head_width
            self.pyramid = nn.ModuleList(nn.Conv2d(c, head_width, 1) for c in self.backbone.channels[2:])
        self.head = nn.Sequential(
            nn.Conv2d(channels, head_width, 3, padding=1, bias=False),
            nn.BatchNorm2d(head_width),
            nn.ReLU(inplace=True),
        )
        per_cell = len(self.anchor_sizes)
        self.classify = nn.Conv2d(head_width, per_cell * (num_classes + 1), 3, padding=1)
        self.regress = nn.Conv2d(head_width, per_cell * 4, 3, padding=1)
        nn.init.zeros_(self.classify.bias)
        # softmax(background = b, classes = 0) gives background 1 - FOREGROUND_PRIOR.
        self.classify.bias.data.view(per_cell, num_classes + 1)[:, 0] = math.log(
            num_classes * (1 - FOREGROUND_PRIOR) / FOREGROUND_PRIOR
        )
        nn.init.normal_(self.regress.weight, std=0.01)
        nn.init.zeros_(self.regress.bias)
        self._anchors: dict[tuple[int, int, str], torch.Tensor] = {}

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """images [N, C, H, W] -> {"logits": [N, A, num_classes + 1], "deltas": [N, A, 4], "anchors": [N, A, 4]}.

        ``anchors`` are (cx, cy, w, h) fractions of the image (the same for every image; a broadcast view).
        """
        hidden = self.head(self.stride8_features(images))
        n, _, height, width = hidden.shape
        logits = self.classify(hidden).permute(0, 2, 3, 1).reshape(n, -1, self.num_classes + 1)
        deltas = self.regress(hidden).permute(0, 2, 3, 1).reshape(n, -1, 4)
        anchors = self.anchors(height, width, hidden.device)
        return {"logits": logits, "deltas": deltas, "anchors": anchors.expand(n, -1, -1)}

    def stride8_features(self, images: torch.Tensor) -> torch.Tensor:
        """images [N, C, H, W] -> the stride-8 map with the coarser context added [N, C', H / 8, W / 8]."""
        if self.backbone is None:
            fine = self.features(images)
            coarse = [self.lateral(self.context(fine))]
        else:
            levels = self.backbone(images)[2:]
            fine, coarse = self.pyramid[0](levels[0]), [p(m) for p, m in zip(self.pyramid[1:], levels[1:], strict=True)]
        for context in coarse:
            fine = fine + nn.functional.interpolate(context, size=fine.shape[-2:], mode="nearest")
        return fine

    def anchors(self, height: int, width: int, device: torch.device) -> torch.Tensor:
        """Anchors of a height x width anchor grid: float32 [A, 4] cxcywh, cached per grid size and device."""
        key = (height, width, str(device))
        if key not in self._anchors:
            self._anchors[key] = grid_anchors(height, width, self.anchor_sizes, device)
        return self._anchors[key]

    @torch.no_grad()
    def detect(
        self,
        images: torch.Tensor,
        score_threshold: float = 0.3,
        iou_threshold: float = 0.5,
        max_detections: int = 100,
    ) -> list[dict[str, torch.Tensor]]:
        """Objects found in each image (call in eval mode).

        Args:
            images: float32 [N, C, H, W], preprocessed as in training (the manifest's preprocessing).
            score_threshold: least class probability kept.
            iou_threshold: boxes of one class overlapping a better one by more than this are dropped (NMS).
            max_detections: most objects per image, the best-scoring.

        Returns:
            One dict per image, best score first: "boxes" float32 [M, 4] (x0, y0, w, h) as fractions of the
            image's width and height, clipped to [0, 1]; "labels" int64 [M] class ids 0..num_classes-1;
            "scores" float32 [M] class probabilities.

        Example:
            >>> pixels = np.stack([to_tensor_array(b, prep) for b in image_bytes])  # models.data
            >>> found = model.eval().detect(torch.from_numpy(pixels), score_threshold=0.5)
            >>> found[0]["boxes"].shape, found[0]["labels"].dtype
            (torch.Size([3, 4]), torch.int64)
        """
        out = self(images)
        probabilities = torch.softmax(out["logits"].float(), dim=-1)[..., 1:]
        boxes = cxcywh_to_xyxy(decode_deltas(out["deltas"].float(), out["anchors"])).clamp(0, 1)
        return [
            _select(boxes[i], probabilities[i], score_threshold, iou_threshold, max_detections)
            for i in range(len(images))
        ]


def _select(
    boxes: torch.Tensor, probabilities: torch.Tensor, score_threshold: float, iou_threshold: float, limit: int
) -> dict[str, torch.Tensor]:
    """One image's detections from boxes [A, 4] xyxy and foreground probabilities [A, K]."""
    scores = probabilities.flatten()
    candidates = (scores > score_threshold).nonzero().squeeze(1)
    candidates = candidates[scores[candidates].argsort(descending=True)[:CANDIDATES_BEFORE_NMS]]
    anchor, labels = candidates // probabilities.shape[1], candidates % probabilities.shape[1]
    chosen, scores = boxes[anchor], scores[candidates]
    keep = batched_nms(chosen, scores, labels, iou_threshold)[:limit]
    return {"boxes": xyxy_to_xywh(chosen[keep]), "labels": labels[keep], "scores": scores[keep]}
