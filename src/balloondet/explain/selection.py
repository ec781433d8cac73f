"""Which boxes to explain: the predictions (``predicted``), the ground-truth boxes no prediction found
(``missed``), or the predictions that match no ground-truth box (``false-positive``), matched one to
one as the ground-truth-vs-prediction figure counts them; ``ground_truth`` reads the boxes from the
split's COCO json."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from balloondet.core import defaults
from balloondet.core.errors import ConfigError, DataError
from balloondet.core.files import load_json
from balloondet.detect.cocostats import match_image
from balloondet.explain.targets import matched_scores

if TYPE_CHECKING:
    from mmengine.structures import InstanceData


CAM_TARGETS = defaults.CAM_TARGETS


class NoTargetError(DataError):
    """The image has no box of the kind asked for (``target``) to explain."""


def check_target(target: str) -> None:
    """A ``ConfigError`` naming the choices, unless ``target`` is one of ``CAM_TARGETS``."""
    if target not in CAM_TARGETS:
        raise ConfigError(f"unknown CAM target {target!r}: choose {', '.join(CAM_TARGETS)}")


def find_annotations(image: str | Path) -> Path:
    """The COCO json of ``image``'s split: ROOT/val/x.jpg -> ROOT/val.json (the data step's layout)."""
    image = Path(image)
    return image.parent.parent / f"{image.parent.name}.json"


def ground_truth(image: str | Path, classes: Sequence[str],
                 ann_file: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The annotated boxes of ``image``: (K, 4) x1, y1, x2, y2 in image pixels, and labels (indices into ``classes``).

    ``ann_file`` defaults to ``find_annotations(image)``; the image is found by file name.
    """
    image = Path(image)
    ann_file = Path(ann_file) if ann_file is not None else find_annotations(image)
    if not ann_file.is_file():
        raise DataError(f"{image}: no annotations to compare with (no {ann_file}; give the COCO json as ann_file)")
    coco = load_json(ann_file, "the split's COCO json")
    ids = [entry["id"] for entry in coco.get("images", []) if Path(entry["file_name"]).name == image.name]
    if not ids:
        raise DataError(f"{image}: no entry for {image.name} in {ann_file}'s images")
    names = {c["id"]: c["name"] for c in coco.get("categories", [])}
    boxes, labels = [], []
    for ann in coco.get("annotations", []):
        if ann["image_id"] != ids[0] or ann.get("iscrowd"):
            continue
        name = names.get(ann["category_id"])
        if name not in classes:
            raise DataError(f"{ann_file}: annotation {ann.get('id')} of {image.name} has category {name!r}, "
                            f"not one of the model's classes ({', '.join(classes)})")
        x, y, w, h = ann["bbox"]
        boxes.append([x, y, x + w, y + h])
        labels.append(list(classes).index(name))
    if not boxes:
        raise DataError(f"{image}: no annotated box in {ann_file}")
    return np.array(boxes, np.float32).reshape(-1, 4), np.array(labels, np.int64)


def select_targets(pred: InstanceData, target: str = defaults.CAM_TARGET, score_thr: float = defaults.SCORE_THR,
                   topk: int = defaults.CAM_TOPK, gt: tuple[torch.Tensor, torch.Tensor] | None = None,
                   iou_threshold: float = defaults.IOU_MATCH, label: int | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The boxes to explain, at most ``topk``: ``(bboxes, labels, scores)`` in ``pred``'s pixels; with ``label``
    (a class index), only boxes of that class (matching is per class, so the others do not change them).

    ``predicted``: the predictions with score >= ``score_thr``. ``missed``: the boxes of ``gt``
    (boxes, labels) that no such prediction matches (``match_one_to_one``, as the ground-truth-vs-prediction
    figure counts them); their score is what the best-matching prediction of any score gives there (0 if
    none). ``false-positive``: the predictions >= ``score_thr`` that match no box of ``gt``.
    """
    check_target(target)
    confident = pred[pred.scores >= score_thr]  # predictions come sorted by score
    if target == "predicted":
        chosen = (confident if label is None else confident[confident.labels == label])[:topk]
        return chosen.bboxes, chosen.labels, chosen.scores
    if gt is None:
        raise ConfigError(f"the {target!r} target needs the ground-truth boxes")
    gt_boxes, gt_labels = (t.to(pred.bboxes.device) for t in gt)
    hit, taken = match_one_to_one(gt_boxes, gt_labels, confident, iou_threshold)
    if target == "missed":
        missed = ~taken.to(gt_boxes.device)
        if label is not None:
            missed &= gt_labels == label
        scores = matched_scores(gt_boxes, gt_labels, pred, iou_threshold)
        return gt_boxes[missed][:topk], gt_labels[missed][:topk], scores[missed][:topk]
    wrong = confident[~hit.to(confident.bboxes.device)]
    wrong = (wrong if label is None else wrong[wrong.labels == label])[:topk]
    return wrong.bboxes, wrong.labels, wrong.scores


def match_one_to_one(gt_boxes: torch.Tensor, gt_labels: torch.Tensor, pred: InstanceData,
                     iou_threshold: float = defaults.IOU_MATCH) -> tuple[torch.Tensor, torch.Tensor]:
    """COCO's matching, the same as the ground-truth-vs-prediction figure's (``cocostats.match_image``), per
    label: each prediction, highest score first, takes the unmatched box it overlaps most at IoU >=
    ``iou_threshold``. Returns (per prediction: matched?, per box: matched?), so that a second prediction
    on a found balloon is a false positive and two balloons under one box leave one missed."""
    def xywh(box: torch.Tensor) -> list[float]:
        x1, y1, x2, y2 = box.tolist()
        return [x1, y1, x2 - x1, y2 - y1]

    hit = torch.zeros(len(pred), dtype=torch.bool)
    taken = torch.zeros(len(gt_boxes), dtype=torch.bool)
    for label in set(gt_labels.tolist()) | set(pred.labels.tolist()):
        gts = [{"bbox": xywh(gt_boxes[i]), "index": i} for i in (gt_labels == label).nonzero().flatten().tolist()]
        dets = [{"bbox": xywh(pred.bboxes[i]), "score": float(pred.scores[i]), "index": i}
                for i in (pred.labels == label).nonzero().flatten().tolist()]
        hits, matched, _ = match_image(gts, dets, iou_threshold)
        for det, matched_det in zip(sorted(dets, key=lambda d: -d["score"]), hits, strict=True):  # match_image's order
            hit[det["index"]] = matched_det
        for box in matched:
            taken[box["index"]] = True
    return hit, taken


def class_index(classes: Sequence[str], name: str | None) -> int | None:
    """The index of class ``name`` in the model's ``classes`` (None for None); a ``ConfigError`` naming them."""
    if name is None:
        return None
    if name not in classes:
        raise ConfigError(f"unknown class {name!r}: the model's classes are {', '.join(classes)}")
    return list(classes).index(name)


def no_target_message(image: str | Path, target: str, n_confident: int, n_gt: int, best: float,
                      score_thr: float, class_name: str | None = None) -> str:
    """Why ``image`` has no box of the kind ``target`` to explain, and what to change."""
    if class_name is not None:
        return f"{image}: no {target} box of class {class_name!r} to explain (score >= {score_thr}); try another"
    if target == "missed":
        return (f"{image}: no missed box: each of its {n_gt} annotated box(es) has a prediction with "
                f"score >= {score_thr} at IoU >= {defaults.IOU_MATCH}")
    if target == "false-positive" and n_confident:
        return (f"{image}: no false positive: each of its {n_confident} prediction(s) with score >= {score_thr} "
                f"matches an annotated box at IoU >= {defaults.IOU_MATCH}")
    return f"{image}: no predicted box with score >= {score_thr} to explain (best score {best:.3f}); lower --score-thr"
