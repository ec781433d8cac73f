"""Does a checkpoint fit a model? :func:`check_fits` compares their tensors; :class:`CheckpointFitHook`
asks inside mmengine's Runner, before the weights are copied (and drops the class-count-dependent
head tensors when fine-tuning)."""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from mmengine.hooks import Hook

from balloondet.core import defaults
from balloondet.core.errors import CheckpointMismatchError
from balloondet.engine.compat import runner_checkpoint

if TYPE_CHECKING:
    import torch


@dataclass
class FitReport:
    """How a checkpoint's tensors compare with a model's (keys without a ``module.`` prefix)."""

    path: str
    total: int  # model tensors (parameters and persistent buffers, without BN's num_batches_tracked)
    missing: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple, tuple]] = field(default_factory=list)  # (key, checkpoint shape, model shape)
    skipped_head: list[tuple[str, tuple, tuple]] = field(default_factory=list)  # class-count-dependent (fine-tuning)
    parts: dict[str, list[int]] = field(default_factory=dict)  # "backbone" -> [tensors that fit, model tensors]

    def part_share(self, part: str) -> float:
        """The share of a part's model tensors (``backbone``, ``neck``...) present with the model's shape."""
        fit, total = self.parts.get(part, (0, 0))
        return fit / total if total else 1.0

    def fit_line(self) -> str:
        """How much of each pretrained part fits, in one line: ``backbone 100 % (96 of 96 tensors), ...``."""
        shares = [f"{part} {100 * self.part_share(part):.0f} % ({self.parts[part][0]} of {self.parts[part][1]} tensors)"
                  for part in defaults.PRETRAINED_PARTS if part in self.parts]
        return f"{self.path}: {', '.join(shares)} fit this model"

    def fine_tune_line(self) -> str:
        """``fit_line`` and, when fine-tuning leaves head tensors out, how many and why, in one line."""
        if not self.skipped_head:
            return self.fit_line()
        _, ckpt_shape, model_shape = self.skipped_head[0]
        return (f"{self.fit_line()}; {len(self.skipped_head)} class-count-dependent head tensors left out "
                f"({ckpt_shape[0]} classes in the checkpoint, {model_shape[0]} in the model)")

    def summary(self) -> str:
        text = (f"{self.path}: {len(self.missing)} of {self.total} model tensors missing, "
                f"{len(self.mismatched)} shape mismatches")
        examples = [f"missing {k}" for k in self.missing[:2]]
        examples += [f"{k}: {list(c)} in the checkpoint, {list(m)} in the model" for k, c, m in self.mismatched[:2]]
        return text + (f" (e.g. {'; '.join(examples)})" if examples else "")

    def skipped_line(self) -> str:
        names = sorted({re.sub(r"\.\d+\.", ".*.", k).rsplit(".", 1)[0] for k, _, _ in self.skipped_head})
        c, m = self.skipped_head[0][1][0], self.skipped_head[0][2][0]
        return (f"{self.path}: not loading {len(self.skipped_head)} class-count-dependent head tensors "
                f"({', '.join(names)}: {c} class outputs in the checkpoint, {m} in the model); "
                f"they start from their initialisation")


def _is_class_count_dependent(key: str, ckpt_shape: tuple, model_shape: tuple) -> bool:
    """A head classifier tensor that differs from the model's only in its output (class) count."""
    module = key.rsplit(".", 1)[0]
    return (key.startswith("bbox_head.") and "cls" in module and len(ckpt_shape) == len(model_shape)
            and len(model_shape) >= 1 and ckpt_shape[1:] == model_shape[1:])


def tensor_shapes(checkpoint: Any) -> dict[str, tuple[int, ...]] | None:
    """``key -> shape`` of a checkpoint's tensors (its ``state_dict``, or the mapping itself), keys without
    a ``module.`` prefix; None when it holds no state dict."""
    import torch

    state_dict = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, Mapping) else None
    if not isinstance(state_dict, Mapping):
        return None
    return {strip_module(k): tuple(v.shape) for k, v in state_dict.items() if isinstance(v, torch.Tensor)}


def strip_module(key: str) -> str:
    """A state-dict key without the ``module.`` prefix that DDP and model wrappers add."""
    return key[len("module."):] if key.startswith("module.") else key


def check_fits(model: torch.nn.Module, checkpoint: Any, path: str | Path,
               allow_head_mismatch: bool = False) -> FitReport:
    """Refuse a checkpoint that does not fit ``model``; returns the :class:`FitReport`.

    ``checkpoint``: what ``safe_load`` read from ``path`` (a checkpoint with ``state_dict``, or a
    state dict itself); ``path`` names it in the messages.

    Loading a trained model (``allow_head_mismatch=False``): any missing or shape-mismatched
    model tensor raises :class:`CheckpointMismatchError`. Fine-tuning
    (``allow_head_mismatch=True``): head classifier tensors that differ only in the class count
    are reported in ``skipped_head``; the checkpoint is refused when less than
    ``defaults.PRETRAINED_FIT`` of the backbone's tensors, or of the neck's, fit (another model:
    another RTMDet size, an ImageNet classifier whose neck is missing, a detector of another family).
    """
    import torch

    path = str(path)
    shapes = tensor_shapes(checkpoint)
    if shapes is None:
        raise CheckpointMismatchError(f"{path}: holds no state dict (got {type(checkpoint).__name__}); "
                                      f"is this a model checkpoint?")
    model = getattr(model, "module", model)  # DDP / model wrappers
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()
                if isinstance(v, torch.Tensor) and not k.endswith("num_batches_tracked")}
    report = FitReport(path=path, total=len(expected))
    for key, shape in expected.items():
        count = report.parts.setdefault(key.split(".")[0], [0, 0])
        count[1] += 1
        count[0] += shapes.get(key) == shape
        if key not in shapes:
            report.missing.append(key)
        elif shapes[key] != shape:
            entry = (key, shapes[key], shape)
            if allow_head_mismatch and _is_class_count_dependent(key, shapes[key], shape):
                report.skipped_head.append(entry)
            else:
                report.mismatched.append(entry)
    bad = len(report.missing) + len(report.mismatched)
    if bad and not allow_head_mismatch:
        raise CheckpointMismatchError(f"{report.summary()}; is this a checkpoint of this config?")
    short = [p for p in defaults.PRETRAINED_PARTS if report.part_share(p) < defaults.PRETRAINED_FIT]
    if allow_head_mismatch and short:
        need = f"{100 * defaults.PRETRAINED_FIT:.0f} %"
        raise CheckpointMismatchError(
            f"{report.fit_line()}; fine-tuning needs at least {need} of the {' and the '.join(short)} "
            f"to fit: is this a checkpoint of this model (RTMDet-tiny)? {report.summary().split(': ', 1)[1]}")
    return report


def check_pretrained(cfg: Any, path: str | Path) -> FitReport:
    """Check a checkpoint to fine-tune from against the model ``cfg`` builds, before any training: read
    safely (``safe_load``), then ``check_fits`` in fine-tuning mode (enough of the backbone and the neck
    must fit). Raises a :class:`~balloondet.core.errors.CheckpointError` naming the file otherwise."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    from balloondet.engine.checkpoint import safe_load

    checkpoint = safe_load(path)
    register_all_modules()
    model = MODELS.build(cfg.model)
    return check_fits(model, checkpoint, path, allow_head_mismatch=True)


class CheckpointFitHook(Hook):
    """Runs :func:`check_fits` when mmengine's Runner has read a checkpoint, before it copies the
    weights into the model (``after_load_checkpoint``, called by ``Runner.load_checkpoint`` for
    ``load_from``, ``test`` and ``resume``). Register it with ``runner.register_hook``.

    ``allow_head_mismatch=True`` (training from ``load_from``): class-count-dependent head
    tensors are dropped from the checkpoint and reported in one line; resuming is always strict.
    """

    priority = "VERY_HIGH"  # before EMAHook copies the state dict

    def __init__(self, allow_head_mismatch: bool = False) -> None:
        self.allow_head_mismatch = allow_head_mismatch

    def after_load_checkpoint(self, runner: Any, checkpoint: dict) -> None:
        from mmengine.logging import print_log

        path, resume = runner_checkpoint(runner)
        model = runner.model.module if hasattr(runner.model, "module") else runner.model
        report = check_fits(model, checkpoint, path, allow_head_mismatch=self.allow_head_mismatch and not resume)
        if report.skipped_head:
            state_dict = checkpoint.get("state_dict", checkpoint)
            skip = {k for k, _, _ in report.skipped_head}
            for key in [k for k in state_dict if strip_module(k) in skip]:
                del state_dict[key]  # so mmengine neither tries to copy them nor lists each one
            print_log(report.skipped_line(), logger="current")
        if report.missing or report.mismatched:  # only reached when fine-tuning
            print_log(report.summary() + "; those keep their initialisation", logger="current",
                      level=logging.WARNING)
