"""What a CAM explains: the score of the boxes to explain, as a function of the detector's outputs.

- ``PriorScoreTarget`` (the gradient methods): the class score of the priors inside the boxes, on
  every pyramid level, so the map explains those boxes at the target layer's own scale. The boxes
  need not be predictions: a missed ground-truth box works too.
- ``BoxScoreTarget`` (AblationCAM, EigenCAM): for every box, IoU + score of the final prediction
  that matches it best; the drop of that value measures a channel's importance.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from balloondet.core import defaults

if TYPE_CHECKING:
    from mmengine.structures import InstanceData


class PriorScoreTarget:
    """Sum over pyramid levels of the mean class score of the priors inside the boxes to explain.

    The gradient-based target. A detector scores a box on every level; the final box comes
    from one of them after NMS, so its score alone gives no gradient to the other levels.
    Scoring every prior whose centre lies inside the box lets a target layer on any level
    (the default: the stride-32 neck output) show which of its features make that level see
    a balloon there.
    """

    def __init__(self, bboxes: torch.Tensor, labels: torch.Tensor) -> None:
        self.bboxes, self.labels = bboxes, labels

    def __call__(self, levels: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        total = 0
        for priors, scores in levels:
            cx, cy = priors[:, 0:1], priors[:, 1:2]
            b = self.bboxes.to(priors.device)
            inside = (cx >= b[:, 0]) & (cx <= b[:, 2]) & (cy >= b[:, 1]) & (cy <= b[:, 3])  # (P, K)
            per_box = scores[:, self.labels.to(priors.device)]  # (P, K)
            total = total + (per_box * inside).sum() / inside.sum().clamp(min=1)
        return total


def best_match(bboxes: torch.Tensor, labels: torch.Tensor, other_bboxes: torch.Tensor,
               other_labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each box, ``(IoU, index)`` of the same-label other box that overlaps it most (IoU 0 if none).

    Differentiable in ``other_bboxes`` (BoxScoreTarget's gradient-free methods need no gradient,
    but the graph must stay intact).
    """
    from torchvision.ops import box_iou

    if len(other_bboxes) == 0 or len(bboxes) == 0:
        zeros = torch.zeros(len(bboxes), device=bboxes.device)
        return zeros, zeros.long()
    ious = box_iou(bboxes.to(other_bboxes.device), other_bboxes)
    ious = torch.where(labels.to(other_labels.device)[:, None] == other_labels[None], ious, torch.zeros_like(ious))
    return ious.max(dim=1)


def matched_scores(bboxes: torch.Tensor, labels: torch.Tensor, pred: InstanceData,
                   iou_threshold: float = defaults.IOU_MATCH) -> torch.Tensor:
    """For each box, the score of its best-matching prediction (``best_match``), 0 below ``iou_threshold``."""
    iou, index = best_match(bboxes, labels, pred.bboxes, pred.labels)
    if len(pred) == 0:
        return iou
    return torch.where(iou > iou_threshold, pred.scores[index], torch.zeros_like(iou))


class BoxScoreTarget:
    """Sum over the boxes to explain of (IoU + score) of their best-matching prediction."""

    def __init__(self, bboxes: torch.Tensor, labels: torch.Tensor, iou_threshold: float = defaults.IOU_MATCH) -> None:
        self.bboxes, self.labels, self.iou_threshold = bboxes, labels, iou_threshold

    def __call__(self, pred: InstanceData) -> torch.Tensor:
        total = pred.scores.sum() * 0  # keeps the graph (and the device) when nothing matches
        if len(pred.bboxes) == 0:
            return total
        iou, index = best_match(self.bboxes, self.labels, pred.bboxes, pred.labels)
        matched = iou > self.iou_threshold
        return total + (iou + pred.scores[index])[matched].sum()
