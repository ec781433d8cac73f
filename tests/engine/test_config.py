"""The config module: finding configs, building a run's config, choosing and scoping the device."""
import shutil
from pathlib import Path

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
    assert default_work_dir(SMOKE, defaults.DATA_ROOT) == default_work_dir(SMOKE)  # the balloons: as before
    # another data set: its own folder, so a finished balloon run is not reused for it
    assert default_work_dir(SMOKE, "data/shapes/") == Path(defaults.WORK_DIRS) / "shapes" / SMOKE
    assert build_config(SMOKE, data_root="data/shapes").work_dir == str(Path(defaults.WORK_DIRS) / "shapes" / SMOKE)


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
def cuda_hidden(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


RECIPES = {  # (CUDA?, checkpoint at hand?) -> the recipe auto picks
    (False, True): defaults.CPU_FINETUNE_CONFIG, (False, False): defaults.CPU_CONFIG,
    (True, True): defaults.GPU_CONFIG, (True, False): defaults.GPU_SCRATCH_CONFIG,
}


@pytest.mark.parametrize("cuda", [False, True], ids=["cpu", "cuda"])
@pytest.mark.parametrize("checkpoint", ["cached", "reachable", "given", "absent"])
def test_auto_fine_tunes_wherever_the_coco_checkpoint_is_at_hand(cuda, checkpoint, tmp_path, monkeypatch, http_server):
    """The real probe: the recipe's own checkpoint in torch's cache, served (over loopback), a file given, or none."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    url = build_config(RECIPES[cuda, True]).load_from
    name = url.rsplit("/", 1)[1]
    served = tmp_path / "zoo"
    served.mkdir()
    (served / name).write_bytes(b"weights")
    base = http_server(served) if checkpoint == "reachable" else "http://127.0.0.1:9"  # port 9: refused
    if checkpoint == "cached":
        (tmp_path / "torch" / "hub" / "checkpoints").mkdir(parents=True)
        (tmp_path / "torch" / "hub" / "checkpoints" / name).write_bytes(b"weights")
    asked = []

    def probe(recipe_url):  # the real probe, with the model zoo's host moved to loopback
        asked.append(recipe_url)
        return coco_checkpoint_at_hand(f"{base}/{recipe_url.rsplit('/', 1)[1]}", timeout=5)

    given = str(served / name) if checkpoint == "given" else None
    config, why = choose_recipe("auto", probe=probe, load_from=given)
    assert config == RECIPES[cuda, checkpoint != "absent"], why
    assert asked == ([] if given else [url])  # the recipe's own checkpoint, unless one was given
    assert "\n" not in why and why.startswith("CUDA" if cuda else "no CUDA device")
    assert ("fine-tune" in why) == (checkpoint != "absent")
    if checkpoint == "absent":
        assert "from scratch" in why and "neither cached nor reachable" in why
    assert build_config(config).load_from == (url if checkpoint != "absent" else None)


@pytest.mark.parametrize("cuda", [False, True], ids=["cpu", "cuda"])
def test_from_scratch_asks_for_the_scratch_recipe_whatever_is_at_hand(cuda, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    config, why = choose_recipe("auto", probe=lambda url: pytest.fail("nothing to look for"), from_scratch=True)
    assert config == RECIPES[cuda, False] and "from scratch was asked for" in why
    cfg = build_config(defaults.CPU_FINETUNE_CONFIG, from_scratch=True)  # a fine-tune recipe asked to start from zero
    assert cfg.load_from is None and cfg.model.backbone.frozen_stages == -1  # random weights are not frozen


def test_the_cpu_fine_tune_is_the_published_recipe_at_320_px():
    """mmyolo's cat fine-tune (frozen backbone, batch 12, AdamW 0.004, 40 epochs, last 5 without Mosaic), at 320 px."""
    cfg = build_config(defaults.CPU_FINETUNE_CONFIG)
    assert cfg.model.backbone.frozen_stages == 4 and cfg.model.bbox_head.num_classes == 1
    assert cfg.train_dataloader.batch_size == 12 and cfg.optim_wrapper.optimizer.lr == pytest.approx(0.004)
    assert cfg.train_cfg.max_epochs == 40
    switch = [h for h in cfg.custom_hooks if h.type == "PipelineSwitchHook"][0]
    assert switch.switch_epoch == 35
    assert {t.get("crop_size") for t in cfg.train_pipeline if t.type == "RandomCrop"} == {(320, 320)}
    assert [t.scale for t in cfg.test_pipeline if t.type == "Resize"] == [(640, 640)]  # tested at 640


def test_resolve_recipe_says_what_it_chose(cuda_hidden, capsys, monkeypatch):
    from balloondet.engine import config

    monkeypatch.setattr(config, "coco_checkpoint_at_hand", lambda url: (False, "offline"))
    assert resolve_recipe("auto") == defaults.CPU_CONFIG
    assert "recipe: rtmdet_tiny_cpu-scratch_balloon (no CUDA device, and no COCO checkpoint (offline)" in \
        capsys.readouterr().out
    assert resolve_recipe("auto", load_from="coco.pth") == defaults.CPU_FINETUNE_CONFIG
    assert "a checkpoint was given (coco.pth)" in capsys.readouterr().out
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
