"""COCO detections against ground truth: matches per image, precision-recall, a bootstrap interval.

Pure functions on COCO dicts (ground truth as in ``val.json``, detections in COCO results format
as ``test`` writes them to ``WORK_DIR/test_detections.bbox.json``); the figures and the `test`
step build on them.

- ``match_detections``: per image, which detections above a score threshold are true or false
  positives and which boxes were missed (greedy by score at IoU 0.5, like COCO's matching).
- ``threshold_sweep``: precision, recall and F1 of that matching at every score threshold.
- ``coco_eval`` / ``pr_curve``: pycocotools' COCOeval, silenced, and its precision array.
- ``bootstrap_map``: a percentile interval of bbox mAP over images drawn with replacement.
"""
from __future__ import annotations

import contextlib
import copy
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from balloondet.core import defaults
from balloondet.core.errors import DataError
from balloondet.core.files import load_json

if TYPE_CHECKING:
    import numpy as np
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval


# --- detections -----------------------------------------------------------------------
def check_detections(dets: list[dict], gt: dict, where: str = "detections") -> list[dict]:
    """``dets`` when every entry has a known image_id, a 4-number bbox and a score; else a clear error."""
    image_ids = {img["id"] for img in gt["images"]}
    for i, det in enumerate(dets):
        missing = {"image_id", "bbox", "score"} - set(det)
        if missing:
            raise DataError(f"{where}: entry {i} lacks {', '.join(sorted(missing))}")
        if det["image_id"] not in image_ids:
            raise DataError(f"{where}: entry {i} has image_id {det['image_id']}, which the ground truth lacks "
                            "(detections of another split or dataset?)")
        if len(det["bbox"]) != 4:
            raise DataError(f"{where}: entry {i} has bbox {det['bbox']}, not [x, y, w, h]")
    return dets


# --- matching at one IoU --------------------------------------------------------------
def iou_xywh(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two [x, y, w, h] boxes (COCO's convention: no +1)."""
    iw = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    ih = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def same_class(det: dict, gt: dict) -> bool:
    """Whether a detection may match a box: the same category (entries without one match any)."""
    return det.get("category_id", gt.get("category_id")) == gt.get("category_id", det.get("category_id"))


@dataclass
class ImageMatch:
    """One image's detections (score-sorted) split into true and false positives, and its missed boxes."""

    image: dict
    tp: list[dict] = field(default_factory=list)  # detections that found a box
    fp: list[dict] = field(default_factory=list)  # detections that found none
    missed: list[dict] = field(default_factory=list)  # ground-truth annotations no detection found
    matched: list[dict] = field(default_factory=list)  # ground-truth annotations found

    @property
    def counts(self) -> tuple[int, int, int]:
        """(true positives, false positives, missed)."""
        return len(self.tp), len(self.fp), len(self.missed)


def match_image(gts: list[dict], dets: list[dict],
                iou_thr: float = defaults.IOU_MATCH) -> tuple[list[bool], list[dict], list[dict]]:
    """Greedy matching by score: each detection, highest score first, takes the unmatched box of its class
    it overlaps most if that IoU is at least ``iou_thr`` (as COCO matches, per category). Returns (per
    detection in score order: matched?, matched boxes, missed boxes). Crowd boxes are left out."""
    gts = [g for g in gts if not g.get("iscrowd", 0)]
    taken = [False] * len(gts)
    hits = []
    for det in sorted(dets, key=lambda d: -d["score"]):
        best, best_iou = None, iou_thr
        for j, gt in enumerate(gts):
            if not taken[j] and same_class(det, gt):
                iou = iou_xywh(det["bbox"], gt["bbox"])
                if iou >= best_iou:
                    best, best_iou = j, iou
        if best is not None:
            taken[best] = True
        hits.append(best is not None)
    pairs = list(zip(gts, taken, strict=True))
    return hits, [g for g, t in pairs if t], [g for g, t in pairs if not t]


def match_detections(gt: dict, dets: list[dict], score_thr: float = defaults.SCORE_THR,
                     iou_thr: float = defaults.IOU_MATCH) -> list[ImageMatch]:
    """Every image of ``gt`` (in its order) with its detections of score >= ``score_thr`` matched."""
    by_image = group_by_image(gt, dets)
    anns = group_by_image(gt, gt["annotations"])
    out = []
    for img in gt["images"]:
        kept = sorted((d for d in by_image[img["id"]] if d["score"] >= score_thr), key=lambda d: -d["score"])
        hits, matched, missed = match_image(anns[img["id"]], kept, iou_thr)
        out.append(ImageMatch(image=img, tp=[d for d, h in zip(kept, hits, strict=True) if h],
                              fp=[d for d, h in zip(kept, hits, strict=True) if not h], missed=missed, matched=matched))
    return out


def category_names(gt: dict) -> list[str]:
    """The class names of COCO ground truth, in category-id order (label i is the i-th)."""
    return [c["name"] for c in sorted(gt["categories"], key=lambda c: c["id"])]


def category_index(gt: dict) -> dict[int, int]:
    """``{category id: label}``: each category's position in ``category_names``."""
    return {c["id"]: i for i, c in enumerate(sorted(gt["categories"], key=lambda c: c["id"]))}


def group_by_image(gt: dict, entries: list[dict]) -> dict[int, list[dict]]:
    """``entries`` (annotations or detections) per image id of ``gt``."""
    groups: dict[int, list[dict]] = {img["id"]: [] for img in gt["images"]}
    for entry in entries:
        groups[entry["image_id"]].append(entry)
    return groups


def threshold_sweep(gt: dict, dets: list[dict], thresholds: Sequence[float],
                    iou_thr: float = defaults.IOU_MATCH) -> dict[str, np.ndarray]:
    """Precision, recall and F1 of ``match_detections`` at each score threshold.

    Greedy matching by score means the detections above a threshold match exactly as they do in
    the full list, so one matching of all detections serves every threshold.
    """
    import numpy as np

    scores, hits, n_gt = [], [], 0
    anns = group_by_image(gt, gt["annotations"])
    for img_id, img_dets in group_by_image(gt, dets).items():
        ordered = sorted(img_dets, key=lambda d: -d["score"])
        image_hits, matched, missed = match_image(anns[img_id], ordered, iou_thr)
        scores += [d["score"] for d in ordered]
        hits += image_hits
        n_gt += len(matched) + len(missed)
    scores, hits = np.asarray(scores, dtype=float), np.asarray(hits, dtype=bool)
    thr = np.asarray(thresholds, dtype=float)
    above = scores[None, :] >= thr[:, None]
    tp = (above & hits[None, :]).sum(1)
    fp = (above & ~hits[None, :]).sum(1)
    precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 1.0)  # nothing kept: nothing wrong
    recall = tp / n_gt if n_gt else np.zeros_like(thr)
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    return {"threshold": thr, "precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp,
            "n_gt": np.full_like(tp, n_gt)}


# --- COCOeval -------------------------------------------------------------------------
@contextlib.contextmanager
def silent() -> Iterator[None]:
    """pycocotools prints a few lines per call: not into our output."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def coco_api(gt: dict, dets: list[dict]) -> tuple[COCO, COCO]:
    """pycocotools ``COCO`` objects of ground truth and detections (no detections: an empty result)."""
    from pycocotools.coco import COCO

    with silent():
        coco_gt = COCO()
        # pycocotools >= 2.0.9's loadRes copies the "info" entry, which COCO files may leave out
        coco_gt.dataset = {"info": {}, **copy.deepcopy(gt)}
        coco_gt.createIndex()
        if dets:
            coco_dt = coco_gt.loadRes(copy.deepcopy(dets))
        else:  # loadRes cannot take an empty list
            coco_dt = COCO()
            coco_dt.dataset = {"info": {}, "images": gt["images"], "categories": gt["categories"], "annotations": []}
            coco_dt.createIndex()
    return coco_gt, coco_dt


def coco_eval(gt: dict, dets: list[dict], all_areas: bool = True) -> COCOeval:
    """An evaluated (per image) and accumulated bbox ``COCOeval``, as mmdet's CocoMetric sets it up
    (every image and category of ``gt``, maxDets 100/300/1000). ``all_areas=False`` keeps the
    area range "all" and maxDets 100 only: what mAP needs, at a third of the cost."""
    from pycocotools.cocoeval import COCOeval

    coco_gt, coco_dt = coco_api(gt, dets)
    ev = COCOeval(coco_gt, coco_dt, "bbox")
    ev.params.imgIds = sorted(img["id"] for img in gt["images"])
    ev.params.catIds = sorted(cat["id"] for cat in gt["categories"])
    ev.params.maxDets = [100, 300, 1000]
    if not all_areas:
        ev.params.areaRng, ev.params.areaRngLbl, ev.params.maxDets = [[0, 1e10]], ["all"], [100]
    with silent():
        ev.evaluate()
        ev.accumulate()
    return ev


def summary_lines(ev: COCOeval) -> list[str]:
    """COCOeval's 12-line summary (as mmdet's log shows it), as text."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        ev.summarize()
    return out.getvalue().rstrip("\n").splitlines()


def map_of(ev: COCOeval) -> float:
    """bbox mAP (IoU 0.50:0.95, all areas, 100 detections) from an accumulated COCOeval; nan without boxes."""
    a = ev.params.areaRngLbl.index("all")
    m = ev.params.maxDets.index(100)
    p = ev.eval["precision"][:, :, :, a, m]
    return float(p[p > -1].mean()) if (p > -1).any() else float("nan")


def pr_curve(ev: COCOeval, iou: float) -> tuple[np.ndarray, np.ndarray, float]:
    """(recall, precision, AP) at IoU ``iou`` from COCOeval's precision array (first category, all
    areas, 100 detections), up to the highest recall the detections reach (COCOeval stores a
    precision of 0 beyond it)."""
    import numpy as np

    t = int(np.argmin(np.abs(ev.params.iouThrs - iou)))
    if abs(ev.params.iouThrs[t] - iou) > 1e-6:
        raise DataError(f"IoU {iou} is not one of COCOeval's thresholds ({ev.params.iouThrs.tolist()})")
    a = ev.params.areaRngLbl.index("all")
    m = ev.params.maxDets.index(100)
    precision = ev.eval["precision"][t, :, 0, a, m]
    if (precision < 0).all():  # no ground-truth box at all
        return np.zeros(0), np.zeros(0), float("nan")
    reached = ev.params.recThrs <= ev.eval["recall"][t, 0, a, m] + 1e-9
    return ev.params.recThrs[reached], precision[reached], float(precision.mean())


# --- bootstrap ------------------------------------------------------------------------
def resampled_map(ev: COCOeval, picks: Sequence[int]) -> float:
    """mAP of the images at positions ``picks`` of ``ev.params.imgIds`` (repeats allowed).

    COCOeval matches each image on its own, so an image drawn twice contributes its per-image
    result twice: accumulating a list of those results equals evaluating a resampled dataset in
    which each copy has its own image id (tests/detect/test_cocostats.py checks it), without re-matching.
    """
    n_img = len(ev.params.imgIds)
    n_area = len(ev.params.areaRng)
    sub = copy.copy(ev)
    sub.evalImgs = [ev.evalImgs[(k * n_area + a) * n_img + i]
                    for k in range(len(ev.params.catIds)) for a in range(n_area) for i in picks]
    sub.params, sub._paramsEval = copy.copy(ev.params), copy.copy(ev._paramsEval)
    sub.params.imgIds = sub._paramsEval.imgIds = list(range(len(picks)))  # unique ids for the copies
    with silent():
        sub.accumulate()
    return map_of(sub)


def bootstrap_map(gt: dict, dets: list[dict], n: int = defaults.BOOTSTRAP_SAMPLES, seed: int = defaults.BOOTSTRAP_SEED,
                  level: float = 0.95) -> dict[str, Any]:
    """Percentile bootstrap interval of bbox mAP over the images of ``gt``.

    Each of ``n`` resamples draws as many images as ``gt`` has, with replacement, and rescores
    them with COCOeval. Returns ``{"bbox_mAP": point estimate, "ci": [lo, hi], "level", "n",
    "seed", "images"}``. With a dozen images the interval is wide: it says how far another
    draw of val images could move the score, not how good the model is.
    """
    import numpy as np

    if not gt["images"]:
        raise DataError("bootstrap: the ground truth has no images")
    ev = coco_eval(gt, dets, all_areas=False)
    n_img = len(ev.params.imgIds)
    rng = np.random.default_rng(seed)
    samples = np.array([resampled_map(ev, rng.integers(0, n_img, n_img)) for _ in range(n)])
    samples = samples[~np.isnan(samples)]  # a draw without any box has no mAP
    tail = (1 - level) / 2 * 100
    lo, hi = (np.percentile(samples, [tail, 100 - tail]) if samples.size else (float("nan"),) * 2)
    return {"bbox_mAP": map_of(ev), "ci": [float(lo), float(hi)], "level": level, "n": int(n), "seed": seed,
            "images": n_img}


def load_pair(ann_file: str | Path, det_file: str | Path) -> tuple[dict, list[dict]]:
    """(ground truth, detections) from a COCO json and a COCO results json (``test``'s detections)."""
    gt = load_json(ann_file, "COCO ground truth (e.g. data/balloon/val.json)")
    dets = load_json(det_file, "detections in COCO results format (`balloondet test` writes "
                               "WORK_DIR/test_detections.bbox.json)")
    if not isinstance(dets, list):
        raise DataError(f"{det_file}: expected a list of detections (COCO results format)")
    return gt, check_detections(dets, gt, where=str(det_file))


def bootstrap_files(ann_file: str | Path, det_file: str | Path, n: int = defaults.BOOTSTRAP_SAMPLES,
                    seed: int = defaults.BOOTSTRAP_SEED) -> dict[str, Any]:
    """``bootstrap_map`` of the detections in ``det_file`` against ``ann_file``."""
    return bootstrap_map(*load_pair(ann_file, det_file), n=n, seed=seed)
