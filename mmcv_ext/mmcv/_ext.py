"""``mmcv._ext`` for mmcv-lite: ``nms`` from torchvision, every other op a clear error.

mmcv-lite is OpenMMLab's mmcv without its compiled extension. mmcv's Python ops load that
extension with ``mmcv.utils.ext_loader.load_ext('_ext', [names])``, which imports this module
and checks that each name exists. balloondet's models (RTMDet: training, test, predict, CAMs)
call one of them, ``nms``, through ``mmcv.ops.batched_nms``; torchvision ships it compiled
for CPU and CUDA with every torch release. Any other name resolves to a function that raises
:class:`MissingCompiledOp` when called, naming the op and how to get mmcv's compiled ops.

A compiled mmcv (``mmcv/_ext.*.so``) takes precedence over this file if both are installed:
Python's importer tries extension modules before source files.
"""
from __future__ import annotations

import torch
import torchvision  # registers torchvision::nms (CPU and CUDA kernels)

BACKEND = f"torchvision {torchvision.__version__}"
HOW_TO_GET_COMPILED_OPS = (
    "this environment has mmcv-lite, whose mmcv._ext (balloondet-mmcv-ext) provides only nms, from torchvision. "
    "For mmcv's compiled ops (RoIAlign, deformable conv, ...), compile mmcv into the venv: "
    "`make setup MMCV=compiled` (docs/setup.md, 'Compiled mmcv ops')."
)


class MissingCompiledOp(NotImplementedError):
    """An mmcv op that needs mmcv's compiled extension was called."""


def nms(bboxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, offset: int = 0) -> torch.Tensor:
    """mmcv's ``ext_module.nms``: indices (int64, into ``bboxes``) of the kept boxes, highest score first.

    ``offset=1`` is mmcv's legacy pixel convention (width = x2 - x1 + 1): the same as adding 1
    to x2 and y2. Half and bfloat16 boxes are compared in float32 (torchvision's CPU kernel
    takes float and double only); the indices are what the caller needs, not the boxes.
    """
    if offset not in (0, 1):
        raise ValueError(f"mmcv nms: offset must be 0 or 1, got {offset!r}")
    if bboxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=bboxes.device)
    if bboxes.dtype not in (torch.float32, torch.float64):
        bboxes = bboxes.float()
    if offset:
        bboxes = torch.cat([bboxes[:, :2], bboxes[:, 2:4] + offset], dim=1)
    return torchvision.ops.nms(bboxes, scores.to(bboxes.dtype), float(iou_threshold))


def get_compiler_version() -> str:
    return f"none (mmcv-lite; nms from {BACKEND})"


def get_compiling_cuda_version() -> str:
    return "not compiled"


def _missing(name: str):  # noqa: ANN202
    def op(*args: object, **kwargs: object) -> None:
        raise MissingCompiledOp(f"mmcv op '{name}' needs mmcv's compiled extension: {HOW_TO_GET_COMPILED_OPS}")

    op.__name__ = op.__qualname__ = name
    return op


def __getattr__(name: str):  # noqa: ANN202
    # dunder and private names stay missing: importlib and pickle probe them (__path__, __wrapped__, ...)
    if name.startswith("_"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return _missing(name)
