"""The `test` step: COCO bbox metrics of a checkpoint on the val split, with mmdet's CocoMetric."""
from __future__ import annotations

from pathlib import Path

from .io import BalloonDataError, write_json_atomic
from .checkpoint import allow_mmengine_checkpoints
from .train import build_config, use_device

COCO_KEYS = ("bbox_mAP", "bbox_mAP_50", "bbox_mAP_75", "bbox_mAP_s", "bbox_mAP_m", "bbox_mAP_l")


def test(config, checkpoint, work_dir=None, device="auto", cfg_options=None, data_root=None) -> dict:
    """Evaluate ``checkpoint``; prints the 12-line COCO summary and returns the metrics.

    Also writes ``WORK_DIR/test_metrics.json`` and the raw detections
    ``WORK_DIR/test_detections.bbox.json`` (COCO results format).
    """
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise BalloonDataError(f"checkpoint not found: {checkpoint}")
    use_device(device)
    cfg = build_config(config, work_dir=work_dir or checkpoint.parent, cfg_options=cfg_options, data_root=data_root)
    cfg.load_from = str(checkpoint)
    cfg.test_evaluator.outfile_prefix = str(Path(cfg.work_dir) / "test_detections")
    cfg.test_evaluator.format_only = False

    from mmdet.utils import register_all_modules
    from mmengine.runner import Runner

    register_all_modules()
    allow_mmengine_checkpoints()
    runner = Runner.from_cfg(cfg)
    metrics = {k: float(v) for k, v in runner.test().items()}
    if not metrics:  # CocoMetric returns nothing when no box passed the score threshold
        print("no detections at all on the val split: every COCO metric is 0")
        metrics = {f"coco/{k}": 0.0 for k in COCO_KEYS}
    out = Path(cfg.work_dir) / "test_metrics.json"
    write_json_atomic({"config": str(config), "checkpoint": str(checkpoint), "metrics": metrics}, out)
    print(f"metrics written to {out}")
    return metrics


def metrics_table(metrics: dict) -> str:
    """A small Markdown table of the headline COCO numbers."""
    rows = [(k.replace("coco/", ""), v) for k, v in metrics.items() if k.replace("coco/", "") in COCO_KEYS]
    return "| metric | value |\n|---|---|\n" + "\n".join(f"| {k} | {v:.3f} |" for k, v in rows)
