"""Every reach into an upstream internal (mmengine, mmdet, torch), in one place.

Each function names what it patches or reads; ``tests/engine/test_compat.py`` pins those APIs, so an
upgrade that moves one fails there, not deep inside a training run or a CAM.

- ``runner_device``: mmengine's Runner module's ``get_device`` answers ``"cpu"`` inside a block
  (mmengine 0.10.7 has no device setting).
- ``unformatted_config_text``: mmengine's ``FormatCode`` (yapf) is skipped inside a block.
- ``torch_version``, ``torch_weights_only_globals``: torch's own weights-only allow-list (private).
- ``checkpoint_loader_schemes``: the prefixes mmengine's ``CheckpointLoader`` knows (private).
- ``runner_checkpoint``: the checkpoint a Runner is loading or resuming (its private ``_load_from``
  and ``_resume``).
- ``keep_head_fp32``: rebinds an mmdet head's ``loss_by_feat``/``predict_by_feat`` to run in fp32.
- ``predict_single_image``: mmdet's private per-image post-processing, with gradients.
- ``separable_max_pools``: CSPNeXt's SPP max pools, replaced in place by separable ones.
"""
from __future__ import annotations

import contextlib
import functools
import re
import types
from typing import TYPE_CHECKING, Any, Callable, Iterator

if TYPE_CHECKING:
    import torch
    from mmengine.structures import InstanceData


# --- mmengine -------------------------------------------------------------------------
@contextlib.contextmanager
def runner_device(device: str) -> Iterator[None]:
    """Inside the block, mmengine's Runner puts the model (and resumed checkpoints) on ``device``.

    mmengine 0.10.7 has no device setting: the Runner moves the model to ``get_device()``,
    which is CUDA whenever torch sees a GPU. For ``cpu`` the Runner module's ``get_device``
    answers ``"cpu"`` inside this block only. (Setting ``CUDA_VISIBLE_DEVICES`` instead would
    hide CUDA for the rest of the process, and does nothing once torch has looked at the GPUs.)
    """
    if device != "cpu":
        yield
        return
    import mmengine.runner.runner as runner_module

    original = runner_module.get_device
    runner_module.get_device = lambda: "cpu"
    try:
        yield
    finally:
        runner_module.get_device = original


@contextlib.contextmanager
def unformatted_config_text() -> Iterator[None]:
    """Inside the block, mmengine logs and saves configs without formatting them with yapf.

    A Runner formats its config three times (the log, the work dir's copy, the visualizer's):
    2-3 s each on 2 CPU cores, and a whole minute for a test run on the GPU check's machine,
    only to lay the same text out differently. The unformatted text loads back to the same config.
    """
    import mmengine.config.config as config_module

    original = config_module.FormatCode
    config_module.FormatCode = lambda text, style_config=None, **_: (text, False)
    try:
        yield
    finally:
        config_module.FormatCode = original


def checkpoint_loader_schemes() -> list[str]:
    """The prefixes mmengine's ``CheckpointLoader`` has a loader for (``""`` is local files)."""
    from mmengine.runner.checkpoint import CheckpointLoader

    return list(CheckpointLoader._schemes)


def runner_checkpoint(runner: Any) -> tuple[str, bool]:
    """(the checkpoint a Runner loads, whether it resumes): ``load_from``, else for a resume the work
    dir's latest checkpoint, as ``Runner.load_or_resume`` chooses."""
    from mmengine.runner import find_latest_checkpoint

    resume = bool(getattr(runner, "_resume", False))
    path = getattr(runner, "_load_from", None)
    if path is None and resume and getattr(runner, "work_dir", None):
        path = find_latest_checkpoint(runner.work_dir)
    return str(path or "checkpoint"), resume


# --- torch ----------------------------------------------------------------------------
def torch_version() -> tuple[int, int]:
    """(major, minor) of the installed torch."""
    import torch

    return tuple(int(re.match(r"\d+", p).group()) for p in torch.__version__.split(".")[:2])


def torch_weights_only_globals() -> dict[str, Any]:
    """``"module.name" -> object``: what torch's weights-only unpickler allows (tensors, storages, dtypes)."""
    from torch import _weights_only_unpickler

    return dict(_weights_only_unpickler._get_allowed_globals())


# --- mmdet ----------------------------------------------------------------------------
FP32_HEAD_METHODS = ("loss_by_feat", "predict_by_feat")


def _to_fp32(value: Any) -> Any:
    """bf16/fp16 tensors in ``value`` (also inside lists, tuples and dicts) as fp32; the rest as is."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.float() if value.is_floating_point() and value.dtype != torch.float32 else value
    if isinstance(value, (list, tuple)):
        return type(value)(_to_fp32(v) for v in value)
    if isinstance(value, dict):
        return {k: _to_fp32(v) for k, v in value.items()}
    return value


def _fp32_method(method: Callable) -> Callable:
    import torch

    @functools.wraps(method)
    def run_in_fp32(self: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=False):
            return method(self, *_to_fp32(args), **_to_fp32(kwargs))

    run_in_fp32.balloondet_fp32 = True
    return run_in_fp32


def keep_head_fp32(model: torch.nn.Module) -> torch.nn.Module:
    """Make the detection head's loss and post-processing run in fp32 even inside autocast (in place).

    Rebinds the head's ``loss_by_feat`` and ``predict_by_feat`` on the head instance, so
    ``copy.deepcopy`` (mmengine's EMA model) rebinds them to the copy. Idempotent; a no-op for
    fp32 inputs outside autocast.
    """
    head = getattr(getattr(model, "module", model), "bbox_head", None)
    if head is None:
        return model
    for name in FP32_HEAD_METHODS:
        bound = getattr(head, name, None)
        if bound is None or getattr(bound, "balloondet_fp32", False):
            continue
        setattr(head, name, types.MethodType(_fp32_method(getattr(type(head), name)), head))
    return model


def predict_single_image(head: torch.nn.Module, cls_scores: list[torch.Tensor], bbox_preds: list[torch.Tensor],
                         index: int, priors: list[torch.Tensor], img_meta: dict, cfg: Any,
                         with_nms: bool = True) -> InstanceData:
    """Image ``index``'s final predictions (after NMS, in input pixels) from the head's outputs, with gradients.

    mmdet's ``predict_by_feat`` detaches the head outputs; this is its per-image loop without
    the detach: the private ``_predict_by_feat_single`` and ``select_single_mlvl(detach=False)``.
    """
    from mmdet.models.utils import select_single_mlvl

    return head._predict_by_feat_single(
        cls_score_list=select_single_mlvl(cls_scores, index, detach=False),
        bbox_pred_list=select_single_mlvl(bbox_preds, index, detach=False),
        score_factor_list=[None] * len(cls_scores), mlvl_priors=priors,
        img_meta=img_meta, cfg=cfg, rescale=False, with_nms=with_nms)


def separable_max_pools(model: torch.nn.Module) -> torch.nn.Module:
    """Each stride-1 k x k max pool (CSPNeXt's SPP block: 5, 9, 13) as a 1 x k pool then a k x 1 pool (in place).

    The same maximum over the same window, so the same outputs bit for bit (the padding is
    -inf either way), in 2k comparisons per pixel instead of k^2: at 640 px on 2 CPU cores the
    SPP block's pools took a third of a bf16 forward pass (56 vs 66 ms per image). No weights change.

    Both pools run on a channels-last copy of the input: ATen's CPU max pool on a contiguous
    (NCHW) tensor is a scalar loop per output pixel, its channels-last kernel is vectorised over
    the channels. On the 192 x 20 x 20 SPP input of a 640 px image, one thread, torch 2.1.2 and
    2.14.1, fp32 and bf16 alike: the three split pools take 23-56 ms in NCHW, 1-2 ms in channels
    last, layout changes included. The output is made contiguous again, so every later layer sees
    what it saw before; outputs are the same bit for bit, gradients up to float rounding (the two pools
    add a pixel's gradients in another order: 2e-5 apart on a unit-scale SPP input). For inference only:
    in training on the AVX2 EPYC they bought nothing (batch 8 at 320 px, fp32: 1.362 vs 1.345 s a step).
    """
    import torch

    for module in list(model.modules()):
        for name, child in module.named_children():
            if type(child) is torch.nn.MaxPool2d and _splits_exactly(child):
                k, p = _pair(child.kernel_size)[0], _pair(child.padding)[0]
                pools = torch.nn.Sequential(torch.nn.MaxPool2d((1, k), 1, (0, p)),
                                            torch.nn.MaxPool2d((k, 1), 1, (p, 0)))
                pools.register_forward_pre_hook(_channels_last_input)
                pools.register_forward_hook(_contiguous_output)
                setattr(module, name, pools)
    return model


def fold_batch_norms(model: torch.nn.Module) -> torch.nn.Module:
    """Each batch norm that follows a convolution folded into a copy of that convolution's weights and bias,
    the norm replaced by an identity (in place; eval mode: the running statistics are what is folded).

    mmcv's ``fuse_conv_bn`` does the same, but writes into the convolution itself: RTMDet's head shares one
    convolution between the pyramid levels, each with its own batch norm, so every level's norm would be
    folded into the one shared weight. Here each norm gets its own copy. For forward passes only (a norm
    is gone): the same outputs up to float rounding, one pass over each feature map fewer.
    """
    import copy

    import torch

    with torch.no_grad():
        for module in list(model.modules()):
            last = None  # (name, conv) of the child just before, when it is a convolution
            for name, child in list(module.named_children()):
                if isinstance(child, torch.nn.modules.batchnorm._BatchNorm) and last is not None \
                        and child.track_running_stats and child.running_var is not None:
                    conv_name, conv = last
                    fused = copy.deepcopy(conv)
                    scale = (child.weight if child.affine else 1) / torch.sqrt(child.running_var + child.eps)
                    bias = conv.bias if conv.bias is not None else torch.zeros_like(child.running_mean)
                    fused.weight = torch.nn.Parameter(conv.weight * scale.reshape(-1, 1, 1, 1))
                    fused.bias = torch.nn.Parameter((bias - child.running_mean) * scale +
                                                    (child.bias if child.affine else 0))
                    setattr(module, conv_name, fused)
                    setattr(module, name, torch.nn.Identity())
                    last = None
                else:
                    last = (name, child) if isinstance(child, torch.nn.Conv2d) else None
    return model


def _channels_last_input(module: torch.nn.Module, args: tuple) -> tuple:
    """Forward pre-hook: a 4-d input in channels-last memory format (the same values)."""
    import torch

    x, *rest = args
    return (x.contiguous(memory_format=torch.channels_last), *rest) if x.dim() == 4 else args


def _contiguous_output(module: torch.nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
    """Forward hook: the output back in the default (contiguous) memory format."""
    return output.contiguous()


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def _splits_exactly(pool: torch.nn.MaxPool2d) -> bool:
    """A k x k pool with stride 1, equal padding, no dilation or ceil mode: the max pools this splits."""
    (kh, kw), (ph, pw) = _pair(pool.kernel_size), _pair(pool.padding)
    return (kh == kw > 1 and ph == pw and _pair(pool.stride) == (1, 1) and _pair(pool.dilation) == (1, 1)
            and not pool.ceil_mode and not pool.return_indices)

