"""A trained detector: load it from a config and a checkpoint, find its checkpoint and its layers."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from . import defaults
from .checkpoint import allow_mmengine_checkpoints, check_fits
from .config import build_config, pick_device
from .errors import ModelError

if TYPE_CHECKING:
    import torch
    from mmdet.models.detectors import BaseDetector


def load_model(config: str | Path, checkpoint: str | Path, device: str = defaults.DEVICE) -> BaseDetector:
    """An mmdet detector in eval mode with the checkpoint's weights (EMA weights, for our runs)."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise ModelError(f"checkpoint not found: {checkpoint} (train one with `balloondet train`)")
    from mmdet.apis import init_detector
    from mmdet.utils import register_all_modules

    register_all_modules()
    allow_mmengine_checkpoints()
    cfg = build_config(config)
    model = init_detector(cfg, str(checkpoint), device=pick_device(device))
    check_fits(model, None, checkpoint)  # every backbone/neck/head tensor, or a clear error
    return model


def find_checkpoint(work_dir: str | Path) -> Path:
    """The best checkpoint of a run (``best_coco_bbox_mAP_epoch_N.pth``), else its last one."""
    work_dir = Path(work_dir)
    best = sorted(work_dir.glob("best_coco*.pth"), key=lambda p: p.stat().st_mtime)
    if best:
        return best[-1]
    last = work_dir / "last_checkpoint"
    if last.is_file():
        path = Path(last.read_text().strip())
        return path if path.is_absolute() else work_dir / path.name
    raise ModelError(f"{work_dir}: no checkpoint (no best_coco*.pth and no last_checkpoint)")


def get_layer(model: torch.nn.Module, name: str) -> torch.nn.Module:
    """The submodule called ``name`` (``neck.out_convs.2`` or ``neck.out_convs[2]``)."""
    try:
        return model.get_submodule(name.replace("[", ".").replace("]", ""))
    except AttributeError:
        names = [n for n, _ in model.named_modules() if n.startswith(("backbone.stage", "neck.")) and n.count(".") <= 2]
        raise ModelError(f"unknown layer name {name!r}; for example: {', '.join(names[:12])} ...") from None
