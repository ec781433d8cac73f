"""The reaches into upstream internals (engine.compat): each does what it says, and the APIs it touches are still there.

An upgrade of mmengine, mmdet or torch that moves one of them fails here, not deep inside a run.
"""
from __future__ import annotations

import inspect
import os

import pytest
import torch

from balloondet.core import defaults
from balloondet.engine.compat import (
    checkpoint_loader_schemes,
    keep_head_fp32,
    runner_checkpoint,
    runner_device,
    separable_max_pools,
    torch_version,
    torch_weights_only_globals,
    unformatted_config_text,
)
from balloondet.engine.config import build_config

SMOKE = "rtmdet_tiny_smoke_synthetic"


@pytest.fixture
def mmengine_sees_cuda(monkeypatch):
    """What mmengine decided at import on a GPU machine: its get_device() answers "cuda"."""
    import mmengine.device.utils

    monkeypatch.setattr(mmengine.device.utils, "DEVICE", "cuda")


def test_runner_device_scopes_the_cpu_choice(mmengine_sees_cuda):
    """mmengine's Runner places the model on get_device(); `cpu` changes that inside the block only."""
    import mmengine.runner.runner as runner_module

    env_before = os.environ.get("CUDA_VISIBLE_DEVICES")
    assert runner_module.get_device() == "cuda"
    with runner_device("cpu"):
        assert runner_module.get_device() == "cpu"
    assert runner_module.get_device() == "cuda"  # restored: CUDA stays usable for the rest of the process
    with runner_device("cuda"):
        assert runner_module.get_device() == "cuda"
    assert os.environ.get("CUDA_VISIBLE_DEVICES") == env_before


def test_runner_builds_on_cpu_although_cuda_is_visible(mmengine_sees_cuda, tmp_path):
    """The real Runner, with torch claiming CUDA: the model lands on the CPU inside runner_device."""
    from mmdet.utils import register_all_modules
    from mmengine.runner import Runner

    register_all_modules()
    cfg = build_config(SMOKE, work_dir=tmp_path)
    if not torch.cuda.is_available():  # without the scope, the Runner moves the model to CUDA
        with pytest.raises((RuntimeError, AssertionError), match="(?i)cuda|nvidia"):
            Runner.from_cfg(cfg.copy())
    with runner_device("cpu"):
        runner = Runner.from_cfg(cfg)
    assert {p.device.type for p in runner.model.parameters()} == {"cpu"}
    assert runner.model.data_preprocessor.device.type == "cpu"


def test_mmengine_still_has_what_runner_device_patches():
    """runner_device replaces the Runner module's get_device; fail loudly if mmengine moves it."""
    import inspect

    import mmengine.runner.runner as runner_module

    assert callable(runner_module.get_device)
    assert "get_device()" in inspect.getsource(runner_module.Runner.wrap_model)
    assert "get_device()" in inspect.getsource(runner_module.Runner.resume)


def test_unformatted_config_text_loads_back_to_the_same_config():
    import mmengine.config.config as config_module
    from mmengine.config import Config

    cfg = build_config(defaults.GPU_SCRATCH_CONFIG)
    formatter = config_module.FormatCode
    with unformatted_config_text():
        text = cfg.pretty_text
    assert config_module.FormatCode is formatter  # restored
    assert Config.fromstring(text, ".py").to_dict() == cfg.to_dict()


def test_keep_head_fp32_survives_deepcopy(initialised_model):
    """mmengine's EMA model is a deepcopy: its head's fp32 methods must be bound to the copy."""
    import copy

    model = keep_head_fp32(copy.deepcopy(initialised_model))
    clone = copy.deepcopy(model)
    assert clone.bbox_head.loss_by_feat.__self__ is clone.bbox_head
    assert getattr(clone.bbox_head.predict_by_feat, "balloondet_fp32", False)


def test_separable_max_pools_give_the_same_outputs(initialised_model):
    """Detector.load's split SPP pools (1 x k then k x 1) compute exactly the stock k x k pools, in fp32 and bf16."""
    import copy


    def square_pools(model):
        return [m.kernel_size for m in model.modules() if type(m) is torch.nn.MaxPool2d and m.kernel_size in (5, 9, 13)]

    stock = copy.deepcopy(initialised_model).eval()
    split = separable_max_pools(copy.deepcopy(initialised_model)).eval()
    assert square_pools(stock) == [5, 9, 13] and square_pools(split) == []  # CSPNeXt's SPP block, replaced
    assert split.state_dict().keys() == stock.state_dict().keys()  # checkpoints are unaffected
    x = torch.randn(2, 3, 160, 224)
    for bf16 in (False, True):
        with torch.no_grad(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            a, b = stock.extract_feat(x), split.extract_feat(x)
        assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    pools = [m for m in split.modules() if isinstance(m, torch.nn.Sequential) and m._forward_pre_hooks]
    assert len(pools) == 3  # each split pool runs on a channels-last copy of its input
    y = torch.randn(2, 8, 20, 20, requires_grad=True)
    for pool, k in zip(pools, (5, 9, 13), strict=True):
        for dtype in (torch.float32, torch.bfloat16):
            out = pool(y.to(dtype))
            assert out.is_contiguous() and torch.equal(out, torch.nn.functional.max_pool2d(y.to(dtype), k, 1, k // 2))
        (grad,) = torch.autograd.grad(pool(y).sum(), y)  # Grad-CAM's backward passes through the pools
        (stock_grad,) = torch.autograd.grad(torch.nn.functional.max_pool2d(y, k, 1, k // 2).sum(), y)
        assert torch.equal(grad, stock_grad)


def test_mmdet_private_api_that_detector_wrapper_calls():
    """DetectorWrapper calls mmdet's private per-image post-processing with keyword arguments and
    select_single_mlvl(detach=False). If mmdet changes either, this fails here, not deep in a CAM run."""
    from mmdet.models.dense_heads import RTMDetHead
    from mmdet.models.utils import select_single_mlvl

    params = list(inspect.signature(RTMDetHead._predict_by_feat_single).parameters)
    assert params == ["self", "cls_score_list", "bbox_pred_list", "score_factor_list", "mlvl_priors", "img_meta",
                      "cfg", "rescale", "with_nms"]
    assert list(inspect.signature(select_single_mlvl).parameters) == ["mlvl_tensors", "batch_id", "detach"]


def test_mmengine_checkpoint_loader_still_keeps_its_schemes():
    """checkpoint_loader_schemes reads CheckpointLoader._schemes: mmengine's own prefixes are there."""
    schemes = checkpoint_loader_schemes()
    assert "" in schemes and "https://" in schemes and "open-mmlab://" in schemes


def test_runner_checkpoint_reads_what_the_runner_loads(tmp_path):
    """load_from as given; on a resume without one, the work dir's latest checkpoint, as mmengine picks it."""
    import types

    assert runner_checkpoint(types.SimpleNamespace(_load_from="a.pth", _resume=False)) == ("a.pth", False)
    (tmp_path / "epoch_2.pth").write_bytes(b"")
    (tmp_path / "last_checkpoint").write_text(str(tmp_path / "epoch_2.pth"))
    resumed = types.SimpleNamespace(_load_from=None, _resume=True, work_dir=str(tmp_path))
    assert runner_checkpoint(resumed) == (str(tmp_path / "epoch_2.pth"), True)
    from mmengine.runner import Runner

    source = inspect.getsource(Runner.__init__)
    assert "self._load_from = load_from" in source and "self._resume = resume" in source


def test_torch_weights_only_allow_list_is_still_readable():
    allowed = torch_weights_only_globals()
    assert allowed["torch._utils._rebuild_tensor_v2"] is torch._utils._rebuild_tensor_v2
    assert torch_version() == tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2])


def test_keep_head_fp32_is_idempotent(initialised_model):
    import copy

    model = keep_head_fp32(copy.deepcopy(initialised_model))
    bound = model.bbox_head.predict_by_feat
    assert keep_head_fp32(model).bbox_head.predict_by_feat is bound


def test_fold_batch_norms_keeps_the_outputs_and_each_levels_own_norm(initialised_model):
    """Every conv-then-BN pair folded, RTMDet's head included, whose levels share one convolution but have a batch
    norm each (folding in place into the shared weight, as mmcv's fuse_conv_bn does, would mix the levels)."""
    import copy

    from balloondet.engine.compat import fold_batch_norms

    model = copy.deepcopy(initialised_model).eval()
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():  # trained-looking statistics: a fold of the init's (0, 1) would change little
        if isinstance(module, torch.nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.5)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=generator) * 0.1)
    head = model.bbox_head
    assert head.cls_convs[1][0].conv is head.cls_convs[0][0].conv  # shared between levels...
    assert head.cls_convs[1][0].bn is not head.cls_convs[0][0].bn  # ...each with its own norm
    folded = fold_batch_norms(copy.deepcopy(model))
    norms = [m for m in folded.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms == []  # every norm of this model follows a convolution
    x = torch.randn(2, 3, 160, 224, generator=generator)
    with torch.no_grad():
        want, got = model.bbox_head(model.extract_feat(x)), folded.bbox_head(folded.extract_feat(x))
    for a, b in zip([*want[0], *want[1]], [*got[0], *got[1]], strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)
