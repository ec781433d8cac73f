"""A trained detector: load it from a config and a checkpoint, find its checkpoint and its layers."""
from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from . import defaults
from .checkpoint import allow_mmengine_checkpoints, check_fits
from .config import build_config, pick_device
from .errors import ModelError

if TYPE_CHECKING:
    import torch
    from mmdet.models.detectors import BaseDetector


def load_model(config: str | Path, checkpoint: str | Path, device: str = defaults.DEVICE,
               precision: str = defaults.PRECISION) -> BaseDetector:
    """An mmdet detector in eval mode with the checkpoint's weights (EMA weights, for our runs).

    ``precision`` (``auto``, ``fp32``, ``bf16``) is the one its predictions and feature maps
    use (``precision.inference_precision``); Grad-CAM always runs in fp32.
    """
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise ModelError(f"checkpoint not found: {checkpoint} (train one with `balloondet train`)")
    from mmdet.apis import init_detector
    from mmdet.utils import register_all_modules

    from .precision import resolve_precision, set_inference_precision  # torch: imported when needed only

    register_all_modules()
    allow_mmengine_checkpoints()
    cfg = build_config(config)
    device = pick_device(device)
    # mmdet's prior generator calls torch.meshgrid without `indexing` (torch >= 1.10 warns, once per
    # process, about a future default); mmdet's own code, the same on every call: not ours to act on.
    warnings.filterwarnings("ignore", message=r"torch\.meshgrid: in an upcoming release", category=UserWarning)
    with contextlib.redirect_stdout(io.StringIO()):  # mmengine's "Loads checkpoint by ..." line
        model = init_detector(cfg, str(checkpoint), device=device)
    check_fits(model, None, checkpoint)  # every backbone/neck/head tensor, or a clear error
    separable_max_pools(model)
    return set_inference_precision(model, resolve_precision(precision, device)[0])


def separable_max_pools(model: torch.nn.Module) -> torch.nn.Module:
    """Each stride-1 k x k max pool (CSPNeXt's SPP block: 5, 9, 13) as a 1 x k pool then a k x 1 pool (in place).

    The same maximum over the same window, so the same outputs bit for bit (the padding is
    -inf either way), in 2k comparisons per pixel instead of k^2: at 640 px on 2 CPU cores the
    SPP block's pools took a third of a bf16 forward pass (56 vs 66 ms per image). No weights change.
    """
    import torch

    for module in list(model.modules()):
        for name, child in module.named_children():
            if type(child) is torch.nn.MaxPool2d and _splits_exactly(child):
                k, p = _pair(child.kernel_size)[0], _pair(child.padding)[0]
                setattr(module, name, torch.nn.Sequential(torch.nn.MaxPool2d((1, k), 1, (0, p)),
                                                          torch.nn.MaxPool2d((k, 1), 1, (p, 0))))
    return model


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def _splits_exactly(pool: torch.nn.MaxPool2d) -> bool:
    """A k x k pool with stride 1, equal padding, no dilation or ceil mode: the max pools this splits."""
    (kh, kw), (ph, pw) = _pair(pool.kernel_size), _pair(pool.padding)
    return (kh == kw > 1 and ph == pw and _pair(pool.stride) == (1, 1) and _pair(pool.dilation) == (1, 1)
            and not pool.ceil_mode and not pool.return_indices)


def find_checkpoint(work_dir: str | Path) -> Path:
    """The final checkpoint of a run (``last_checkpoint``), else its best-on-val one.

    The final one, not the best: with 13 val images, the best of many val evaluations
    flatters the model, and the run's reported number is the final checkpoint's.
    """
    work_dir = Path(work_dir)
    last = work_dir / "last_checkpoint"
    if last.is_file():
        path = Path(last.read_text().strip())
        path = path if path.is_file() else work_dir / path.name  # the run may have moved
        if path.is_file():
            return path
    best = sorted(work_dir.glob("best_coco*.pth"), key=lambda p: p.stat().st_mtime)
    if best:
        return best[-1]
    raise ModelError(f"{work_dir}: no checkpoint (no last_checkpoint and no best_coco*.pth)")


def get_layer(model: torch.nn.Module, name: str) -> torch.nn.Module:
    """The submodule called ``name`` (``neck.out_convs.2`` or ``neck.out_convs[2]``)."""
    try:
        return model.get_submodule(name.replace("[", ".").replace("]", ""))
    except AttributeError:
        names = [n for n, _ in model.named_modules() if n.startswith(("backbone.stage", "neck.")) and n.count(".") <= 2]
        raise ModelError(f"unknown layer name {name!r}; for example: {', '.join(names[:12])} ...") from None
