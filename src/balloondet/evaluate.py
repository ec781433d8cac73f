"""The `test` step: COCO bbox metrics of a checkpoint on the val split, with mmdet's CocoMetric."""
from __future__ import annotations

from pathlib import Path

from . import defaults
from .checkpoint import allow_mmengine_checkpoints, fit_check_hook
from .config import build_config, pick_device, runner_device, unformatted_config_text
from .errors import ModelError
from .io import write_json_atomic

COCO_KEYS = ("bbox_mAP", "bbox_mAP_50", "bbox_mAP_75", "bbox_mAP_s", "bbox_mAP_m", "bbox_mAP_l")


def evaluate_checkpoint(config: str | Path, checkpoint: str | Path, work_dir: str | Path | None = None,
                        device: str = defaults.DEVICE, cfg_options: dict | None = None,
                        data_root: str | Path | None = None) -> dict[str, float]:
    """Evaluate ``checkpoint``; prints the 12-line COCO summary and returns the metrics.

    Also writes ``WORK_DIR/test_metrics.json`` and the raw detections
    ``WORK_DIR/test_detections.bbox.json`` (COCO results format). (The CLI verb is `test`.)
    """
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise ModelError(f"checkpoint not found: {checkpoint}")
    device = pick_device(device)
    cfg = build_config(config, work_dir=work_dir or checkpoint.parent, cfg_options=cfg_options, data_root=data_root)
    cfg.load_from = str(checkpoint)
    cfg.test_evaluator.outfile_prefix = str(Path(cfg.work_dir) / "test_detections")
    cfg.test_evaluator.format_only = False

    from mmdet.utils import register_all_modules
    from mmengine.runner import Runner

    register_all_modules()
    allow_mmengine_checkpoints()
    with runner_device(device), unformatted_config_text():
        runner = Runner.from_cfg(cfg)
        runner.register_hook(fit_check_hook())  # the checkpoint must fit the model
        metrics = {k: float(v) for k, v in runner.test().items()}
    if not metrics:  # CocoMetric returns nothing when no box passed the score threshold
        print("no detections at all on the val split: every COCO metric is 0")
        metrics = {f"coco/{k}": 0.0 for k in COCO_KEYS}
    out = Path(cfg.work_dir) / "test_metrics.json"
    write_json_atomic({"config": str(config), "checkpoint": str(checkpoint), "metrics": metrics}, out)
    print(f"metrics written to {out}")
    return metrics


def metrics_table(metrics: dict[str, float]) -> str:
    """A small Markdown table of the headline COCO numbers."""
    rows = [(k.replace("coco/", ""), v) for k, v in metrics.items() if k.replace("coco/", "") in COCO_KEYS]
    return "| metric | value |\n|---|---|\n" + "\n".join(f"| {k} | {v:.3f} |" for k, v in rows)
