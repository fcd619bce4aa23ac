"""Detection quality: PASCAL VOC average precision (all-point interpolation) per class and its mean over classes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from models.boxes import box_iou, xywh_to_xyxy


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the precision-recall curve made monotone (VOC 2010+ all-point interpolation).

    Args:
        recall: float [D], non-decreasing, after each detection by descending score.
        precision: float [D], at the same points.
    """
    recall = np.concatenate(([0.0], recall, [1.0]))
    precision = np.concatenate(([0.0], precision, [0.0]))
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.nonzero(recall[1:] != recall[:-1])[0]
    return float(np.sum((recall[steps + 1] - recall[steps]) * precision[steps + 1]))


def mean_average_precision(
    detections: Sequence[dict[str, torch.Tensor]],
    truths: Sequence[dict[str, torch.Tensor]],
    num_classes: int,
    iou_threshold: float = 0.5,
) -> dict[str, float]:
    """VOC-style AP per class at ``iou_threshold`` and their mean over the classes that have ground truth.

    Per class, detections of all images are taken by descending score; each is a true positive when its best-
    overlapping ground-truth box of that class in its image reaches ``iou_threshold`` and was not claimed by a
    higher-scoring detection, else a false positive (duplicates count as false positives).

    Args:
        detections: per image, "boxes" float [M, 4] xywh, "labels" int64 [M], "scores" float [M] (as
            :meth:`models.detector.Detector.detect` returns them).
        truths: per image, "boxes" float [G, 4] xywh and "labels" int64 [G], in the same units as the detections.
        num_classes: class ids are 0..num_classes-1.

    Returns:
        {"map": mean AP over classes with ground truth, "ap_<id>": AP of each such class}.
    """
    if len(detections) != len(truths):
        raise ValueError(f"{len(detections)} images of detections but {len(truths)} of ground truth")
    per_class = {}
    for cls in range(num_classes):
        ground = [xywh_to_xyxy(t["boxes"][t["labels"] == cls].float()) for t in truths]
        total = sum(len(g) for g in ground)
        if total == 0:
            continue
        found = [
            (d["scores"][d["labels"] == cls], xywh_to_xyxy(d["boxes"][d["labels"] == cls].float())) for d in detections
        ]
        scores = torch.cat([s for s, _ in found]).float()
        image = torch.cat([torch.full((len(s),), i) for i, (s, _) in enumerate(found)])
        within = torch.cat([torch.arange(len(s)) for s, _ in found])
        claimed = [torch.zeros(len(g), dtype=torch.bool) for g in ground]
        hits = np.zeros(len(scores), dtype=bool)
        for rank, k in enumerate(scores.argsort(descending=True, stable=True).tolist()):
            i, j = int(image[k]), int(within[k])
            if len(ground[i]) == 0:
                continue
            overlaps = box_iou(found[i][1][j : j + 1], ground[i])[0]
            best = int(overlaps.argmax())
            if overlaps[best] >= iou_threshold and not claimed[i][best]:
                claimed[i][best] = True
                hits[rank] = True
        true_positives = np.cumsum(hits)
        precision = true_positives / np.arange(1, len(hits) + 1)
        per_class[cls] = average_precision(true_positives / total, precision)
    if not per_class:
        raise ValueError("no ground-truth boxes: mean average precision is undefined")
    return {"map": float(np.mean(list(per_class.values()))), **{f"ap_{c}": ap for c, ap in per_class.items()}}
