"""The detector's training signal: anchors matched to ground truth by IoU, focal loss on classes, smooth L1 on
the deltas of the matched anchors.
"""

from __future__ import annotations

import torch
from torch import nn

from models.boxes import box_iou, cxcywh_to_xyxy, encode_deltas, xywh_to_xyxy, xyxy_to_cxcywh

BACKGROUND = -1
IGNORED = -2


def match_anchors(
    anchors: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor, positive_iou: float = 0.5,
    negative_iou: float = 0.4,
) -> torch.Tensor:  # fmt: skip
    """The object each anchor learns: int64 [N, A], an object index, BACKGROUND, or IGNORED.

    An anchor takes the object it overlaps most when that IoU is at least ``positive_iou``, is background below
    ``negative_iou`` and ignored in between; and every object's best anchor takes it whatever the IoU, so small
    objects that no anchor overlaps well are still learnt.

    Args:
        anchors: [A, 4] cxcywh.
        boxes: [N, G, 4] xywh, padded.
        labels: int64 [N, G], -1 where padding.
    """
    valid = labels >= 0
    iou = box_iou(cxcywh_to_xyxy(anchors)[None], xywh_to_xyxy(boxes))  # [N, A, G]
    iou = iou.masked_fill(~valid[:, None, :], -1.0)
    best_iou, best_object = iou.max(dim=2)
    matched = torch.where(best_iou >= positive_iou, best_object, torch.full_like(best_object, IGNORED))
    matched = matched.masked_fill(best_iou < negative_iou, BACKGROUND)
    image, obj = valid.nonzero(as_tuple=True)
    best_anchor = iou.argmax(dim=1)  # [N, G]
    matched[image, best_anchor[image, obj]] = obj
    return matched


def detection_loss(
    outputs: dict[str, torch.Tensor], boxes: torch.Tensor, labels: torch.Tensor, gamma: float = 2.0,
    smooth_l1_beta: float = 1 / 9,
) -> dict[str, torch.Tensor]:  # fmt: skip
    """Loss of a batch, each part summed over anchors and divided by the number of matched anchors.

    Args:
        outputs: the detector's "logits" [N, A, K + 1], "deltas" [N, A, 4] and "anchors" [N, A, 4] cxcywh.
        boxes: float32 [N, G, 4] ground-truth xywh fractions, padded.
        labels: int64 [N, G] class ids 0..K-1, -1 where padding.
        gamma: focal-loss focusing: easy (mostly background) anchors weigh (1 - p) ** gamma as much.

    Returns:
        {"loss": classification + regression, "classification": softmax focal loss, "regression": smooth L1 of
        the deltas of matched anchors}, scalar float32 tensors.
    """
    anchors = outputs["anchors"][0]
    matched = match_anchors(anchors, boxes, labels)
    positive = matched >= 0
    count = positive.sum().clamp(min=1).float()
    index = matched.clamp(min=0)
    target_class = torch.gather(labels, 1, index) + 1
    target_class = torch.where(positive, target_class, torch.zeros_like(target_class))
    scored = matched != IGNORED
    logits = outputs["logits"].float()[scored]
    cross_entropy = nn.functional.cross_entropy(logits, target_class[scored], reduction="none")
    focal = (1 - torch.exp(-cross_entropy)) ** gamma * cross_entropy
    target_boxes = xyxy_to_cxcywh(xywh_to_xyxy(torch.gather(boxes, 1, index[..., None].expand(-1, -1, 4))))
    targets = encode_deltas(target_boxes[positive], outputs["anchors"][positive])
    regression = nn.functional.smooth_l1_loss(
        outputs["deltas"].float()[positive], targets, beta=smooth_l1_beta, reduction="sum"
    )
    classification = focal.sum() / count
    regression = regression / count
    return {"loss": classification + regression, "classification": classification, "regression": regression}
