"""Box geometry in torch: formats, IoU, anchors, R-CNN box coding and non-maximum suppression.

Every box here is normalised by the image's width and height (fractions in [0, 1]); formats are named by their
coordinates: ``xywh`` (x0, y0, w, h), ``xyxy`` (x0, y0, x1, y1), ``cxcywh`` (centre x, centre y, w, h).
"""

from __future__ import annotations

import math

import torch

# Scale of each delta (dx, dy, dw, dh) as in Faster R-CNN, so that the regression targets have unit-order spread.
DELTA_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
# Largest dw, dh decoded: exp(4.1) ~ 60x the anchor side, far beyond any object, so exp never overflows.
MAX_LOG_SCALE = math.log(1000.0 / 16)


def xywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """[..., 4] (x0, y0, w, h) -> [..., 4] (x0, y0, x1, y1)."""
    x0, y0, w, h = boxes.unbind(-1)
    return torch.stack((x0, y0, x0 + w, y0 + h), dim=-1)


def xyxy_to_xywh(boxes: torch.Tensor) -> torch.Tensor:
    """[..., 4] (x0, y0, x1, y1) -> [..., 4] (x0, y0, w, h)."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack((x0, y0, x1 - x0, y1 - y0), dim=-1)


def xyxy_to_cxcywh(boxes: torch.Tensor) -> torch.Tensor:
    """[..., 4] (x0, y0, x1, y1) -> [..., 4] (cx, cy, w, h)."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack(((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0), dim=-1)


def cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """[..., 4] (cx, cy, w, h) -> [..., 4] (x0, y0, x1, y1)."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), dim=-1)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Intersection over union of every pair: a [..., P, 4], b [..., Q, 4] (xyxy) -> [..., P, Q] in [0, 1].

    Leading dimensions broadcast, so a batch of anchors [1, A, 4] against ground truth [N, G, 4] gives [N, A, G].
    """
    a, b = a.unsqueeze(-2), b.unsqueeze(-3)
    top_left = torch.maximum(a[..., :2], b[..., :2])
    bottom_right = torch.minimum(a[..., 2:], b[..., 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(-1)
    area_a = (a[..., 2:] - a[..., :2]).clamp(min=0).prod(-1)
    area_b = (b[..., 2:] - b[..., :2]).clamp(min=0).prod(-1)
    return inter / (area_a + area_b - inter).clamp(min=1e-12)


def grid_anchors(height: int, width: int, sizes: tuple[float, ...], device: torch.device | None = None) -> torch.Tensor:
    """Square anchors centred on every cell of a height x width feature map: float32 [height * width * S, 4] cxcywh.

    Anchor sides are ``sizes``, fractions of the image side, so the same anchors fit any input resolution. Order:
    row, then column, then size, matching a head's [N, S * 4, H, W] output reshaped to [N, H * W * S, 4].
    """
    ys = (torch.arange(height, dtype=torch.float32, device=device) + 0.5) / height
    xs = (torch.arange(width, dtype=torch.float32, device=device) + 0.5) / width
    cy, cx = torch.meshgrid(ys, xs, indexing="ij")
    side = torch.tensor(sizes, dtype=torch.float32, device=device)
    count = height * width
    centres = torch.stack((cx, cy), dim=-1).reshape(count, 1, 2).expand(count, len(sizes), 2)
    sides = side.reshape(1, -1, 1).expand(count, len(sizes), 2)
    return torch.cat((centres, sides), dim=-1).reshape(-1, 4)


def encode_deltas(boxes: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """Regression targets (dx, dy, dw, dh) that turn ``anchors`` into ``boxes``; both [..., 4] cxcywh -> [..., 4].

    dx = wx (gx - ax) / aw, dy = wy (gy - ay) / ah, dw = ww log(gw / aw), dh = wh log(gh / ah) (R-CNN).
    """
    wx, wy, ww, wh = DELTA_WEIGHTS
    return torch.stack(
        (
            wx * (boxes[..., 0] - anchors[..., 0]) / anchors[..., 2],
            wy * (boxes[..., 1] - anchors[..., 1]) / anchors[..., 3],
            ww * torch.log(boxes[..., 2].clamp(min=1e-6) / anchors[..., 2]),
            wh * torch.log(boxes[..., 3].clamp(min=1e-6) / anchors[..., 3]),
        ),
        dim=-1,
    )


def decode_deltas(deltas: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`encode_deltas`: deltas [..., 4] applied to anchors [..., 4] cxcywh -> boxes [..., 4] cxcywh."""
    wx, wy, ww, wh = DELTA_WEIGHTS
    dw = (deltas[..., 2] / ww).clamp(max=MAX_LOG_SCALE)
    dh = (deltas[..., 3] / wh).clamp(max=MAX_LOG_SCALE)
    return torch.stack(
        (
            anchors[..., 0] + deltas[..., 0] / wx * anchors[..., 2],
            anchors[..., 1] + deltas[..., 1] / wy * anchors[..., 3],
            anchors[..., 2] * torch.exp(dw),
            anchors[..., 3] * torch.exp(dh),
        ),
        dim=-1,
    )


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression: indices (int64 [K], by descending score) of the boxes [M, 4] xyxy kept.

    A box is dropped when it overlaps a kept, higher-scoring box with IoU above ``iou_threshold``.
    """
    order = scores.argsort(descending=True)
    overlaps = box_iou(boxes[order], boxes[order]) > iou_threshold
    alive = torch.ones(len(order), dtype=torch.bool, device=boxes.device)
    for i in range(len(order)):
        if alive[i]:
            # Only later (lower-scoring) boxes can be suppressed by box i.
            alive[i + 1 :] &= ~overlaps[i, i + 1 :]
    return order[alive]


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """NMS within each class: boxes [M, 4] xyxy, scores [M], labels int64 [M] -> kept indices int64 [K].

    Boxes of different classes never suppress each other: each class is shifted to its own region of the plane.
    """
    if len(boxes) == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    span = boxes.max() - boxes.min() + 1
    return nms(boxes + (labels.to(boxes.dtype) * span)[:, None], scores, iou_threshold)
