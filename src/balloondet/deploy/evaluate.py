"""`test --backend onnx|openvino`: the val split through an exported file, scored as `test` scores a checkpoint.

``evaluate_exported`` runs every image of the split's COCO json through the backend, writes the detections
(COCO results format, all of them, as mmdet's CocoMetric receives them) to ``WORK_DIR/test_detections.bbox.json``
and scores them with pycocotools set up as CocoMetric is (``cocostats.coco_eval``), so the numbers are the same
keys, rounded alike, in ``WORK_DIR/test_metrics.json``. ``agreement`` checks two backends' detections of one
image against each other (the export's acceptance test).
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from balloondet.core import defaults
from balloondet.core.files import display_path, load_json, write_json_atomic
from balloondet.detect.cocostats import bootstrap_map, coco_eval, silent
from balloondet.detect.test import COCO_KEYS

if TYPE_CHECKING:
    import numpy as np

    from balloondet.deploy.backend import ExportedDetector
    from balloondet.engine.detector import Detector

BOX_TOLERANCE = 1.0  # px: an export's box may differ this much from PyTorch's (same image, same class)
SCORE_TOLERANCE = 1e-3


def coco_metrics(gt: dict, dets: list[dict]) -> dict[str, float]:
    """The six headline numbers as CocoMetric reports them (``coco/bbox_mAP`` ..., rounded to 3 decimals)."""
    ev = coco_eval(gt, dets)
    with silent():
        ev.summarize()
    return {f"coco/{key}": float(f"{ev.stats[i]:.3f}") for i, key in enumerate(COCO_KEYS)}


def evaluate_exported(detector: ExportedDetector | Detector, work_dir: str | Path,
                      data_root: str | Path = defaults.DATA_ROOT, split: str = "val",
                      bootstrap: int = defaults.BOOTSTRAP_SAMPLES, quiet: bool = False) -> dict[str, float]:
    """`test` for an exported model (or a ``Detector``, for the benchmark's torch row): metrics of ``split``
    (returned, and in ``WORK_DIR/test_metrics.json``, with the median time of ``infer`` per image)."""
    import mmcv
    from tqdm.auto import tqdm

    ann_file = Path(data_root) / f"{split}.json"
    gt = load_json(ann_file, f"the converted {split} split (`balloondet data`)")
    cat_ids = [c["id"] for c in sorted(gt["categories"], key=lambda c: c["id"])]
    dets, seconds, backend = [], [], getattr(detector, "backend", "torch")
    for img in tqdm(gt["images"], desc=f"test ({backend})", unit="img", disable=quiet):
        bgr = mmcv.imread(str(Path(data_root) / split / img["file_name"]))
        start = time.perf_counter()
        boxes, scores, labels = detector.infer(bgr)
        seconds.append(time.perf_counter() - start)
        for (x1, y1, x2, y2), score, label in zip(boxes.tolist(), scores.tolist(), labels.tolist(), strict=True):
            dets.append({"image_id": img["id"], "category_id": cat_ids[label], "bbox": [x1, y1, x2 - x1, y2 - y1],
                         "score": score})
    metrics = coco_metrics(gt, dets)
    work_dir = Path(work_dir)
    write_json_atomic(dets, work_dir / "test_detections.bbox.json")
    record: dict[str, Any] = {"model": display_path(getattr(detector, "path", "")), "backend": backend,
                              "metrics": metrics, "seconds_per_image": statistics.median(seconds) if seconds else None,
                              "precision": getattr(detector, "precision", "fp32"),
                              "device": getattr(detector, "device", "cpu")}
    if bootstrap:
        ci = bootstrap_map(gt, dets, n=bootstrap)
        metrics["coco/bbox_mAP_ci95_lo"], metrics["coco/bbox_mAP_ci95_hi"] = ci["ci"]
        record.update(bbox_mAP_ci95=ci["ci"], bootstrap=ci["n"], bootstrap_seed=ci["seed"])
    write_json_atomic(record, work_dir / "test_metrics.json")
    if not quiet:
        print(f"{backend}: bbox mAP {metrics['coco/bbox_mAP']:.3f}, AP50 {metrics['coco/bbox_mAP_50']:.3f} on "
              f"{len(gt['images'])} {split} images; median {1000 * (record['seconds_per_image'] or 0):.0f} ms per "
              f"image (resize, network, post-processing); metrics in {display_path(work_dir / 'test_metrics.json')}")
    return metrics


def agreement(reference: tuple[np.ndarray, np.ndarray, np.ndarray], other: tuple[np.ndarray, np.ndarray, np.ndarray],
              score_thr: float = defaults.SCORE_THR) -> dict[str, Any]:
    """How two backends' detections of one image compare at ``score_thr``: the counts, and for each reference
    detection the closest one of the same class in ``other`` (boxes by their largest coordinate difference).
    ``ok``: the same count, every box within ``BOX_TOLERANCE`` px and every score within ``SCORE_TOLERANCE``."""
    import numpy as np

    (rb, rs, rl), (ob, os_, ol) = reference, other
    keep_r, keep_o = rs >= score_thr, os_ >= score_thr
    rb, rs, rl, ob, os_, ol = rb[keep_r], rs[keep_r], rl[keep_r], ob[keep_o], os_[keep_o], ol[keep_o]
    box_diff, score_diff = 0.0, 0.0
    for box, score, label in zip(rb, rs, rl, strict=True):
        same = ol == label
        if not same.any():
            box_diff = score_diff = float("inf")
            break
        diffs = np.abs(ob[same] - box).max(1)
        j = int(np.argmin(diffs))
        box_diff, score_diff = max(box_diff, float(diffs[j])), max(score_diff, float(abs(os_[same][j] - score)))
    ok = len(rs) == len(os_) and box_diff <= BOX_TOLERANCE and score_diff <= SCORE_TOLERANCE
    return {"count": (len(rs), len(os_)), "box_diff": box_diff, "score_diff": score_diff, "ok": ok}
