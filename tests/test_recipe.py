"""Which recipe `auto` picks, the COCO checkpoint's mechanics (without the real file), and run helpers."""
import hashlib
import types

import pytest
import torch

from balloondet import defaults
from balloondet.config import (
    build_config,
    choose_recipe,
    coco_checkpoint_at_hand,
    resolve_recipe,
    unformatted_config_text,
)
from balloondet.hooks import TimeBudgetHook

SMOKE = "rtmdet_tiny_smoke_synthetic"


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


def test_unformatted_config_text_loads_back_to_the_same_config():
    import mmengine.config.config as config_module
    from mmengine.config import Config

    cfg = build_config(defaults.GPU_SCRATCH_CONFIG)
    formatter = config_module.FormatCode
    with unformatted_config_text():
        text = cfg.pretty_text
    assert config_module.FormatCode is formatter  # restored
    assert Config.fromstring(text, ".py").to_dict() == cfg.to_dict()


def fake_runner(epoch: int, max_epochs: int):
    return types.SimpleNamespace(epoch=epoch, max_epochs=max_epochs,
                                 train_loop=types.SimpleNamespace(stop_training=False),
                                 logger=types.SimpleNamespace(warning=lambda msg: None))


def test_time_budget_stops_after_the_epoch_past_it():
    spent = TimeBudgetHook(seconds=0)
    runner = fake_runner(epoch=4, max_epochs=10)  # the hook runs before the loop counts epoch 5 as done
    spent.before_train(runner)
    spent.after_train_epoch(runner)
    assert runner.train_loop.stop_training and spent.stopped_at == 5
    plenty = TimeBudgetHook(seconds=3600)
    runner = fake_runner(epoch=4, max_epochs=10)
    plenty.before_train(runner)
    plenty.after_train_epoch(runner)
    assert not runner.train_loop.stop_training and plenty.stopped_at is None
    last = fake_runner(epoch=9, max_epochs=10)  # the last epoch ends the run anyway: nothing to report
    spent.after_train_epoch(last)
    assert not last.train_loop.stop_training


def coco_checkpoint(folder):
    """An RTMDet-tiny checkpoint for the 80 COCO classes, in the model zoo's layout and naming."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    register_all_modules()
    cfg = build_config(SMOKE)
    cfg.model.bbox_head.num_classes = 80
    torch.manual_seed(1)
    model = MODELS.build(cfg.model)
    for p in model.parameters():  # not the initialisation a fresh model would have
        torch.nn.init.normal_(p, std=0.02)
    path = folder / "rtmdet_tiny_coco.pth"
    torch.save({"meta": {"epoch": 300, "mmdet_version": "3.0.0rc0"}, "state_dict": model.state_dict()}, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    named = path.rename(folder / f"rtmdet_tiny_8xb32-300e_coco_20220902_112414-{digest[:8]}.pth")
    return named, model.state_dict()


@pytest.mark.slow
def test_load_from_a_coco_checkpoint_over_http(tmp_path, monkeypatch, http_server, synthetic_root, capfd):
    """load_from a URL: fetched, hash-checked, backbone and neck loaded, the 80-class head skipped in one line."""
    from balloondet.train import train

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    served = tmp_path / "zoo"
    served.mkdir()
    path, coco = coco_checkpoint(served)
    url = f"{http_server(served)}/{path.name}"
    work = train(SMOKE, work_dir=tmp_path / "run", device="cpu", epochs=1, data_root=synthetic_root,
                 cfg_options={"load_from": url, "optim_wrapper.optimizer.lr": 0.0,  # lr 0, no schedule:
                              "param_scheduler": []})  # the loaded weights stay as they are
    out = capfd.readouterr()
    log = out.out + out.err
    assert (tmp_path / "torch" / "hub" / "checkpoints" / path.name).is_file()  # downloaded into torch's cache
    skipped = [line for line in log.splitlines() if "class-count-dependent head tensors" in line]
    assert len(skipped) == 1 and "80 class outputs in the checkpoint, 1 in the model" in skipped[0], log[-3000:]
    trained = torch.load(work / "epoch_1.pth", map_location="cpu")["state_dict"]
    params = [k for k in coco if k.startswith(("backbone.", "neck.")) and "running_" not in k
              and "num_batches_tracked" not in k]
    assert len(params) > 100
    for key in params:  # the COCO weights but for the EMA's rounding; an initialisation differs by ~0.02
        assert (trained[key] - coco[key]).abs().max() < 1e-5, key
    assert trained["bbox_head.rtm_cls.0.weight"].shape[0] == 1  # the head kept its own, one-class shape


def test_each_run_gets_its_own_visualizer():
    """mmengine reuses a visualizer by name, and its log folder: two runs in one process must not share one."""
    names = {build_config(SMOKE).visualizer.name for _ in range(2)}
    assert len(names) == 2 and all(n.startswith("visualizer-") for n in names)
