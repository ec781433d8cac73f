"""Regenerate every README figure from a run's work dir (`balloondet figures WORK_DIR`).

An orchestrator above the steps: it calls plot_dataset, curves, predict, featmap and cam.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from balloondet.core import defaults
from balloondet.core.errors import DataError
from balloondet.core.files import display_path
from balloondet.core.images import write_preview
from balloondet.engine.config import saved_config_files


def run_config(work_dir: str | Path) -> Path:
    """The config that mmengine saved into the work dir when the run started."""
    configs = saved_config_files(work_dir)
    if not configs:
        raise DataError(f"{work_dir}: no saved config (*.py); is this a training work dir?")
    return configs[0]


def example_image(data_root: str | Path = defaults.DATA_ROOT, split: str = "val") -> Path:
    """A val image worth showing: the one with the most labelled balloons (ties: first by name)."""
    ann_file = Path(data_root) / f"{split}.json"
    if not ann_file.is_file():
        raise DataError(f"{ann_file} not found; convert the dataset first (`balloondet data`)")
    coco = json.loads(ann_file.read_text())
    counts = {img["id"]: 0 for img in coco["images"]}
    for ann in coco["annotations"]:
        counts[ann["image_id"]] += 1
    best = max(sorted(coco["images"], key=lambda i: i["file_name"]), key=lambda i: counts[i["id"]])
    return Path(data_root) / split / best["file_name"]


def make_figures(work_dir: str | Path, data_root: str | Path = defaults.DATA_ROOT, image: str | Path | None = None,
                 out: str | Path = defaults.FIGURES_DIR, device: str = defaults.DEVICE,
                 cam_method: str = defaults.CAM_METHOD, score_thr: float = defaults.SCORE_THR) -> list[Path]:
    """dataset, training curves, prediction, backbone/neck feature maps, Grad-CAM at the neck's three
    scales, ground truth against predictions, precision-recall and box-size figures, a missed
    balloon's Grad-CAM, and the cam-eval curves when analyse.ipynb (or cam-eval) left them. The val detections
    come from ``test``'s ``WORK_DIR/test_detections.bbox.json``; without one, the run's checkpoint is
    tested first."""
    from balloondet.data.plot import plot_dataset
    from balloondet.detect.curves import plot_curves
    from balloondet.detect.predict import predict
    from balloondet.detect.report import DETECTIONS, box_sizes, gt_vs_pred, pr_curves
    from balloondet.detect.test import evaluate_checkpoint
    from balloondet.engine.detector import Detector, find_checkpoint
    from balloondet.explain.cam import cam, cam_scales
    from balloondet.explain.featmap import MODULES, featmap

    out = Path(out)
    config = run_config(work_dir)
    image = Path(image) if image else example_image(data_root)
    detector = Detector.load(config, find_checkpoint(work_dir), device=device)
    written = [out / defaults.DATASET_FIGURE, out / defaults.CURVES_FIGURE, out / defaults.PREDICTION_FIGURE,
               *(out / defaults.FEATMAP_FIGURE.format(module=m) for m in MODULES), out / defaults.CAM_FIGURE,
               out / defaults.GT_VS_PRED_FIGURE, out / defaults.PR_FIGURE, out / defaults.BOX_SIZES_FIGURE]
    plot_dataset(data_root, out=out / defaults.DATASET_FIGURE)
    plot_curves(work_dir, out=out / defaults.CURVES_FIGURE)
    predict(detector, image, score_thr=score_thr, out=Path(work_dir) / "predict")
    write_preview(Path(work_dir) / "predict" / image.name, out / defaults.PREDICTION_FIGURE)
    featmap(detector, image, modules=MODULES, out=out)
    cam_scales(detector, image, method=cam_method, score_thr=score_thr, out=out / defaults.CAM_FIGURE)
    if not (Path(work_dir) / DETECTIONS).is_file():
        evaluate_checkpoint(config, find_checkpoint(work_dir), work_dir=work_dir, device=device, data_root=data_root,
                            quiet=True)
    gt_vs_pred(work_dir, data_root, score_thr=score_thr, out=out / defaults.GT_VS_PRED_FIGURE)
    pr_curves(work_dir, data_root, score_thr=score_thr, out=out / defaults.PR_FIGURE)
    box_sizes(config, data_root, out=out / defaults.BOX_SIZES_FIGURE)
    missed = cam(detector, Path(data_root) / "val", method=cam_method, target="missed",
                 target_layer=defaults.CAM_MISSED_LAYER, score_thr=score_thr, out=Path(work_dir) / "cam_missed")
    if missed:  # the first val image with a missed balloon, as in analyse.ipynb
        shutil.copyfile(Path(work_dir) / "cam_missed" / f"{missed[0].image_path.stem}.png",
                        out / defaults.CAM_MISSED_FIGURE)
        written.append(out / defaults.CAM_MISSED_FIGURE)
    evaluation = Path(work_dir) / "cam_eval" / defaults.CAM_EVAL_FIGURE
    if evaluation.is_file():  # cam-eval takes minutes: its figure is copied from analyse.ipynb's run, not redone
        shutil.copyfile(evaluation, out / defaults.CAM_EVAL_FIGURE)
        written.append(out / defaults.CAM_EVAL_FIGURE)
    else:
        print(f"no {display_path(evaluation)}: run analyse.ipynb or `balloondet cam-eval ... --out "
              f"{display_path(evaluation.parent)}` (~5 min) for {defaults.CAM_EVAL_FIGURE}")
    print("wrote " + ", ".join(display_path(p) for p in written))
    return written
