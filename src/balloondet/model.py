"""Load a trained detector from a config and a checkpoint (the first cell of analyse.ipynb)."""
from __future__ import annotations

from pathlib import Path

from .checkpoint import allow_mmengine_checkpoints
from .io import BalloonDataError
from .train import build_config, pick_device


def load_model(config, checkpoint, device: str = "auto"):
    """An mmdet detector in eval mode with the checkpoint's weights (EMA weights, for our runs)."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise BalloonDataError(f"checkpoint not found: {checkpoint} (train one with `balloondet train`)")
    from mmdet.apis import init_detector
    from mmdet.utils import register_all_modules

    register_all_modules()
    allow_mmengine_checkpoints()
    cfg = build_config(config)
    return init_detector(cfg, str(checkpoint), device=pick_device(device))


def find_checkpoint(work_dir) -> Path:
    """The best checkpoint of a run (``best_coco_bbox_mAP_epoch_N.pth``), else its last one."""
    work_dir = Path(work_dir)
    best = sorted(work_dir.glob("best_coco*.pth"), key=lambda p: p.stat().st_mtime)
    if best:
        return best[-1]
    last = work_dir / "last_checkpoint"
    if last.is_file():
        path = Path(last.read_text().strip())
        return path if path.is_absolute() else work_dir / path.name
    raise BalloonDataError(f"{work_dir}: no checkpoint (no best_coco*.pth and no last_checkpoint)")
