"""bfloat16 on the CPU: the network's convolutions in bf16, the detection head's arithmetic in fp32.

- ``resolve_precision``: ``auto`` is ``bf16`` on a CPU with native bfloat16 instructions
  (AVX512-BF16 or AMX: 1.7x faster training, 1.3-1.5x faster inference for RTMDet-tiny on
  this repo's 2-core EPYC) and ``fp32`` everywhere else, with the reason.
- ``CPUAutocastOptimWrapper``: mmengine 0.10.7's ``AmpOptimWrapper`` refuses the CPU; this
  wrapper enters ``torch.autocast('cpu', torch.bfloat16)`` around the forward and the loss.
  bf16 has the range of fp32, so no loss scaling is needed.
- ``FP32HeadHook``: under autocast the head's outputs are bf16, whose 8-bit mantissa puts a
  box edge near x = 600 px on a 4 px grid. The head's ``loss_by_feat`` (assigner, IoU and
  focal losses) and ``predict_by_feat`` (box decoding, NMS) therefore run outside autocast
  on fp32 copies of their inputs (``compat.keep_head_fp32``, applied to a Runner's model for
  train, val and test). Only the convolutions, where the time goes, use bf16.
- ``set_precision``: a config that trains, validates and tests in bf16. The steps that call the
  model themselves (predict, featmap, cam-eval's scoring) autocast through ``Detector.autocast``;
  the CAM's gradients stay fp32.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator

import torch
from mmdet.registry import HOOKS
from mmengine.hooks import Hook
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS

from balloondet.core import defaults
from balloondet.core.errors import ConfigError
from balloondet.engine.compat import keep_head_fp32

NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of CPUs that compute bf16 natively


def cpu_bf16_flag(cpuinfo: str | Path = "/proc/cpuinfo") -> str | None:
    """The first native-bf16 CPU flag of this machine, or None (also where /proc/cpuinfo is missing)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return None
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
    return next((flag for flag in NATIVE_BF16_FLAGS if flag in flags), None)


def resolve_precision(precision: str, device: str, cpuinfo: str | Path = "/proc/cpuinfo") -> tuple[str, str]:
    """(``fp32`` or ``bf16``, why) for ``precision`` in ``defaults.PRECISIONS`` on ``device`` (cpu/cuda)."""
    if precision not in defaults.PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}: use {', '.join(defaults.PRECISIONS)}")
    if device != "cpu":
        if precision == "bf16":
            raise ConfigError("--precision bf16 is for the CPU; on CUDA this package trains in fp32")
        return "fp32", f"fp32 on {device}"
    if precision != "auto":
        return precision, f"{precision}, as asked"
    flag = cpu_bf16_flag(cpuinfo)
    if flag:
        return "bf16", f"bf16 autocast: this CPU computes bfloat16 natively ({flag})"
    return "fp32", "fp32: this CPU has no native bfloat16 (no avx512_bf16/amx_bf16), where bf16 would be slower"


def cpu_autocast(enabled: bool = True) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to bfloat16 on the CPU (or a no-op when not ``enabled``)."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled)


@OPTIM_WRAPPERS.register_module()
class CPUAutocastOptimWrapper(OptimWrapper):
    """``OptimWrapper`` whose forward/loss context is ``torch.autocast('cpu', torch.bfloat16)``."""

    @contextlib.contextmanager
    def optim_context(self, model: torch.nn.Module) -> Iterator[None]:
        keep_head_fp32(model)
        with super().optim_context(model), cpu_autocast():
            yield


@HOOKS.register_module()
class FP32HeadHook(Hook):
    """Applies ``keep_head_fp32`` to the Runner's model before training, validation and testing."""

    priority = "VERY_HIGH"

    def before_run(self, runner: Any) -> None:
        keep_head_fp32(runner.model)


def set_precision(cfg: Any, precision: str) -> None:
    """A config that trains, validates and tests in ``precision`` (``fp32`` or ``bf16``; in place)."""
    if precision != "bf16":
        return
    cfg.optim_wrapper.type = "CPUAutocastOptimWrapper"
    cfg.optim_wrapper.pop("dtype", None)
    cfg.optim_wrapper.pop("loss_scale", None)
    for loop in ("val_cfg", "test_cfg"):  # mmengine's loops autocast with `fp16=True` (bf16 on the CPU)
        if cfg.get(loop) is not None:
            cfg[loop]["fp16"] = True
    hooks = cfg.get("custom_hooks") or []
    if not any(h.get("type") == "FP32HeadHook" for h in hooks):
        cfg.custom_hooks = [*hooks, dict(type="FP32HeadHook")]
