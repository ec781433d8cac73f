"""The config module: finding configs, building a run's config, choosing and scoping the device."""
import shutil

import pytest
import torch
from conftest import REPO

from balloondet.core import defaults
from balloondet.core.errors import ConfigError
from balloondet.engine.config import (
    build_config,
    choose_recipe,
    coco_checkpoint_at_hand,
    default_work_dir,
    pick_device,
    resolve_config,
    resolve_recipe,
)

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
def cuda_visible(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


@pytest.fixture
def cuda_hidden(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_cuda_with_the_coco_checkpoint_fine_tunes(cuda_visible):
    asked = []
    config, why = choose_recipe("auto", probe=lambda url: asked.append(url) or (True, "cached"))
    assert config == defaults.GPU_CONFIG == "rtmdet_tiny_1xb12-40e_balloon" and "fine-tune" in why
    assert asked == [build_config(defaults.GPU_CONFIG).load_from]  # the recipe's own checkpoint was looked for


def test_cuda_without_the_checkpoint_trains_the_gpu_recipe_from_scratch(cuda_visible):
    config, why = choose_recipe("auto", probe=lambda url: (False, "offline"))
    assert config == defaults.GPU_SCRATCH_CONFIG and "offline" in why
    cfg = build_config(config)
    assert cfg.load_from is None and cfg.train_dataloader.dataset.pipeline[2].img_scale == (640, 640)


def test_cpu_trains_the_cpu_recipe_and_looks_for_no_checkpoint(cuda_hidden):
    config, why = choose_recipe("auto", probe=lambda url: pytest.fail("no checkpoint is needed on a CPU"))
    assert config == defaults.CPU_CONFIG and "no CUDA" in why
    assert choose_recipe("cpu", probe=lambda url: (True, ""))[0] == defaults.CPU_CONFIG  # CPU asked for, GPU or not


def test_resolve_recipe_says_what_it_chose(cuda_hidden, capsys):
    assert resolve_recipe("auto") == defaults.CPU_CONFIG
    assert "recipe: rtmdet_tiny_cpu-scratch_balloon (no CUDA device" in capsys.readouterr().out
    assert resolve_recipe(SMOKE) == SMOKE


def test_checkpoint_at_hand_cached_served_or_not(tmp_path, monkeypatch, http_server):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    served = tmp_path / "served"
    served.mkdir()
    (served / "coco.pth").write_bytes(b"weights")
    url = f"{http_server(served)}/coco.pth"
    assert coco_checkpoint_at_hand(url) == (True, "its server answers")
    assert not (tmp_path / "torch").exists()  # looked at, not downloaded
    ok, why = coco_checkpoint_at_hand("http://127.0.0.1:9/coco.pth", timeout=2)
    assert not ok and "neither cached nor reachable" in why
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "coco.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"weights")
    assert coco_checkpoint_at_hand("http://127.0.0.1:9/coco.pth")[0]  # cached: no network needed


def test_each_run_gets_its_own_visualizer():
    """mmengine reuses a visualizer by name, and its log folder: two runs in one process must not share one."""
    names = {build_config(SMOKE).visualizer.name for _ in range(2)}
    assert len(names) == 2 and all(n.startswith("visualizer-") for n in names)
