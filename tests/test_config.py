"""The config module: finding configs, building a run's config, choosing and scoping the device."""
import os
import shutil

import pytest
import torch
from conftest import REPO

from balloondet import defaults
from balloondet.config import build_config, default_work_dir, pick_device, resolve_config, runner_device
from balloondet.errors import ConfigError

SMOKE = "rtmdet_tiny_smoke_synthetic"


def test_set_epochs_moves_every_milestone():
    cfg = build_config("rtmdet_tiny_1xb12-40e_balloon", epochs=20)
    assert cfg.train_cfg.max_epochs == 20
    assert cfg.train_cfg.dynamic_intervals == [(15, 1)]  # was 30 of 40
    cosine = cfg.param_scheduler[1]
    assert (cosine.begin, cosine.end, cosine.T_max) == (10, 20, 10)
    assert cfg.param_scheduler[0].end == 30  # iteration-based warm-up is left alone
    switch = [h for h in cfg.custom_hooks if h.type == "PipelineSwitchHook"][0]
    assert switch.switch_epoch == 15


def test_real_recipe_fine_tunes_from_coco_and_scratch_clears_it():
    cfg = build_config("rtmdet_tiny_1xb12-40e_balloon")
    assert cfg.load_from.startswith("https://download.openmmlab.com/") and cfg.load_from.endswith(".pth")
    assert cfg.model.bbox_head.num_classes == 1 and cfg.train_dataloader.batch_size == 12
    assert cfg.optim_wrapper.optimizer.lr == pytest.approx(0.004 * 12 / 256)
    scratch = build_config("rtmdet_tiny_1xb12-40e_balloon", from_scratch=True)
    assert scratch.load_from is None and scratch.model.backbone.init_cfg is None
    cpu = build_config("rtmdet_tiny_cpu-scratch_balloon")
    assert cpu.load_from is None and cpu.model.backbone.init_cfg is None


def test_data_root_reaches_every_loader_and_evaluator(tmp_path):
    cfg = build_config(SMOKE, data_root=tmp_path / "elsewhere")
    for name in ("train_dataloader", "val_dataloader", "test_dataloader"):
        assert cfg[name].dataset.data_root == f"{tmp_path}/elsewhere/"
    assert cfg.val_evaluator.ann_file == f"{tmp_path}/elsewhere/val.json"


def types_in(node) -> set:
    """Every ``type`` named anywhere in a config tree."""
    if isinstance(node, dict):
        return ({node["type"]} if "type" in node else set()).union(*(types_in(v) for v in node.values()))
    if isinstance(node, (list, tuple)):
        return set().union(*(types_in(v) for v in node))
    return set()


def test_torchrun_on_cpu_uses_gloo_plain_bn_and_no_device_ids():
    cfg = build_config(SMOKE, launcher="pytorch", device="cpu")
    assert cfg.env_cfg.dist_cfg.backend == "gloo"
    assert cfg.model_wrapper_cfg.device_ids is None and cfg.model.use_syncbn is False
    assert "SyncBN" not in types_in(cfg.model.to_dict()) and "BN" in types_in(cfg.model.to_dict())
    assert "SyncBN" in types_in(build_config(SMOKE).model.to_dict())  # the recipe itself asks for it


def test_default_work_dir_is_named_after_the_config():
    assert build_config(SMOKE).work_dir == str(default_work_dir(SMOKE)) == f"{defaults.WORK_DIRS}/{SMOKE}"
    assert default_work_dir(f"configs/{SMOKE}.py") == default_work_dir(SMOKE)


# --- finding configs by name ----------------------------------------------------------------
@pytest.fixture
def outside_the_checkout(tmp_path, monkeypatch):
    """As for an installed package: no checkout next to the code, run from an unrelated folder."""
    monkeypatch.setattr(defaults, "SOURCE_ROOT", tmp_path / "site-packages")
    monkeypatch.delenv(defaults.CONFIGS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_config_names_resolve_from_the_checkout_wherever_we_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(defaults.CONFIGS_ENV, raising=False)
    assert resolve_config(SMOKE) == REPO / "configs" / f"{SMOKE}.py"
    assert resolve_config(f"{SMOKE}.py") == REPO / "configs" / f"{SMOKE}.py"


def test_config_names_resolve_from_the_environment_variable(outside_the_checkout, monkeypatch):
    folder = outside_the_checkout / "my_configs"
    shutil.copytree(REPO / "configs", folder)
    with pytest.raises(ConfigError, match=rf"config not found: {SMOKE} .*{defaults.CONFIGS_ENV}"):
        resolve_config(SMOKE)
    monkeypatch.setenv(defaults.CONFIGS_ENV, str(folder))
    assert resolve_config(SMOKE) == folder / f"{SMOKE}.py"
    assert build_config(SMOKE).train_cfg.max_epochs > 0  # its _base_ (a sibling file) resolves too


def test_config_names_resolve_from_the_working_directory(outside_the_checkout):
    shutil.copytree(REPO / "configs", outside_the_checkout / "configs")
    assert resolve_config(SMOKE).resolve() == (outside_the_checkout / "configs" / f"{SMOKE}.py").resolve()


def test_unknown_config_names_the_known_ones():
    with pytest.raises(ConfigError, match=rf"config not found: nope .*names: .*{SMOKE}"):
        resolve_config("nope")


# --- devices ----------------------------------------------------------------------------
def test_pick_device():
    assert pick_device("cpu") == "cpu"
    assert pick_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="unknown device 'gpu'"):
        pick_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="torch sees no CUDA device"):
            pick_device("cuda")


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
