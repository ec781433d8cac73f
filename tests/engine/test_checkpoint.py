"""Checkpoints: safe unpickling on both stacks, refusing what does not fit, verified downloads.

The fast tests build their checkpoints from the smoke config's untrained model; the `slow`
ones use the session's trained smoke run.
"""
from __future__ import annotations

import pytest
import torch
from conftest import mmengine_like_checkpoint, save_malicious

from balloondet.cli import main
from balloondet.core.errors import CheckpointError, UnsafeCheckpointError
from balloondet.engine.checkpoint import (
    allow_mmengine_checkpoints,
    load_from_safe_http,
    load_from_safe_local,
    safe_load,
)

TORCH = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2])
SMOKE = "rtmdet_tiny_smoke_synthetic"


@pytest.fixture
def image(tmp_path):
    from PIL import Image

    path = tmp_path / "img.jpg"
    Image.new("RGB", (64, 48), (200, 30, 30)).save(path)
    return path


# --------------------------------------------------------------------------- safe unpickling


PROTOCOL4 = pytest.param("protocol4", marks=pytest.mark.skipif(
    TORCH >= (2, 6), reason="torch's weights-only unpickler reads protocol 2 (what torch.save writes) only"))


@pytest.mark.parametrize("fmt", ["zip", "legacy", PROTOCOL4])
def test_mmengine_checkpoint_contents_load(tmp_path, fmt):
    ckpt = mmengine_like_checkpoint()
    path = tmp_path / "ok.pth"
    kw = {"zip": {}, "legacy": {"_use_new_zipfile_serialization": False}, "protocol4": {"pickle_protocol": 4}}[fmt]
    torch.save(ckpt, path, **kw)
    out = safe_load(path)
    assert set(out) == set(ckpt)
    assert out["meta"]["seed"] == 5 and out["meta"]["set"] == {1, 2} and out["meta"]["bytes"] == b"xy"
    assert out["meta"]["arr"].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert out["message_hub"]["log_scalars"]["train/loss"].mean() == pytest.approx(1.5)
    for key, tensor in ckpt["state_dict"].items():
        assert torch.equal(out["state_dict"][key], tensor)
    assert out["optimizer"]["state"][0]["exp_avg"].shape == ckpt["optimizer"]["state"][0]["exp_avg"].shape


@pytest.mark.parametrize("fmt", ["zip", "legacy", PROTOCOL4])
def test_malicious_checkpoint_is_refused_and_does_not_run(tmp_path, fmt):
    marker = tmp_path / "ran"
    kw = {"zip": {}, "legacy": {"_use_new_zipfile_serialization": False}, "protocol4": {"pickle_protocol": 4}}[fmt]
    path = save_malicious(tmp_path / "evil.pth", marker, **kw)
    with pytest.raises(UnsafeCheckpointError) as err:
        safe_load(path)
    assert str(path) in str(err.value) and "system" in err.value.global_name
    assert isinstance(err.value, CheckpointError)
    assert not marker.exists()


def test_a_pickled_module_is_refused(tmp_path):
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pth")
    with pytest.raises(UnsafeCheckpointError, match="torch.nn.modules.linear.Linear"):
        safe_load(tmp_path / "module.pth")


def test_unreadable_and_missing_files_are_clear_errors(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="junk.pth: not a readable PyTorch checkpoint"):
        safe_load(tmp_path / "junk.pth")
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        safe_load(tmp_path / "nope.pth")


def test_every_mmengine_checkpoint_scheme_goes_through_the_safe_loader():
    from mmengine.runner.checkpoint import CheckpointLoader

    allow_mmengine_checkpoints()
    assert CheckpointLoader._get_checkpoint_loader("work_dirs/x.pth") is load_from_safe_local
    assert CheckpointLoader._get_checkpoint_loader("https://x.org/a.pth") is load_from_safe_http
    assert CheckpointLoader._get_checkpoint_loader("http://x.org/a.pth") is load_from_safe_http
    for other in ("open-mmlab://resnet50", "torchvision://resnet50", "pavi://x", "s3://b/x.pth"):
        with pytest.raises(CheckpointError, match="only from local files and http"):
            CheckpointLoader.load_checkpoint(other)


def test_mmengine_loaders_refuse_the_malicious_checkpoint(tmp_path, smoke_model):
    from mmengine.runner.checkpoint import _load_checkpoint, load_checkpoint

    marker = tmp_path / "ran"
    path = save_malicious(tmp_path / "evil.pth", marker)
    allow_mmengine_checkpoints()
    with pytest.raises(UnsafeCheckpointError, match="evil.pth.*posix.system"):
        _load_checkpoint(str(path))
    with pytest.raises(UnsafeCheckpointError):
        load_checkpoint(smoke_model, str(path))  # what mmdet's init_detector calls
    assert not marker.exists()


# --------------------------------------------------------------------------- the four entry points


def test_cli_predict_refuses_malicious_and_empty_checkpoints(tmp_path, image, capsys):
    marker = tmp_path / "ran"
    evil = save_malicious(tmp_path / "evil.pth", marker)
    assert main(["predict", SMOKE, str(evil), str(image), "--out", str(tmp_path / "out"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert str(evil) in err and "posix.system" in err and "refusing" in err
    assert not marker.exists()
    torch.save({"state_dict": {}, "meta": {}}, tmp_path / "empty.pth")
    assert main(["predict", SMOKE, str(tmp_path / "empty.pth"), str(image), "--out", str(tmp_path / "out"),
                 "--device", "cpu"]) == 2
    assert "model tensors missing" in capsys.readouterr().err
    assert not (tmp_path / "out" / "predictions.json").exists()


def test_cli_test_refuses_malicious_and_mismatched_checkpoints(tmp_path, synthetic_root, coco_head_state_dict, capsys):
    marker = tmp_path / "ran"
    evil = save_malicious(tmp_path / "evil.pth", marker)
    common = ["--work-dir", str(tmp_path / "wd"), "--data-root", str(synthetic_root), "--device", "cpu"]
    assert main(["test", SMOKE, str(evil), *common]) == 2
    err = capsys.readouterr().err
    assert str(evil) in err and "posix.system" in err
    assert not marker.exists()
    torch.save({"state_dict": coco_head_state_dict}, tmp_path / "coco80.pth")
    assert main(["test", SMOKE, str(tmp_path / "coco80.pth"), *common]) == 2
    assert "6 shape mismatches" in capsys.readouterr().err
    assert not (tmp_path / "wd" / "test_metrics.json").exists()


def test_cli_train_resume_refuses_malicious_checkpoint(tmp_path, synthetic_root, capsys):
    marker = tmp_path / "ran"
    work_dir = tmp_path / "run"
    work_dir.mkdir()
    evil = save_malicious(work_dir / "epoch_1.pth", marker)
    (work_dir / "last_checkpoint").write_text(str(evil))
    assert main(["train", SMOKE, "--work-dir", str(work_dir), "--resume", "--epochs", "2",
                 "--data-root", str(synthetic_root), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert str(evil) in err and "posix.system" in err
    assert not marker.exists()
    assert not (work_dir / "epoch_2.pth").exists()


# --------------------------------------------------------------------------- fit


# --------------------------------------------------------------------------- downloads


# --------------------------------------------------------------------------- a real trained run

@pytest.mark.train
def test_training_checkpoint_loads_safely(trained_smoke):
    path = trained_smoke["work_dir"] / f"epoch_{trained_smoke['epochs']}.pth"  # with optimizer and message hub
    ckpt = safe_load(path)
    assert {"state_dict", "message_hub", "optimizer", "meta"} <= set(ckpt)
    assert ckpt["meta"]["epoch"] == trained_smoke["epochs"]
    if TORCH >= (2, 6):
        allow_mmengine_checkpoints()
        assert torch.load(path, map_location="cpu", weights_only=True)["meta"]["epoch"] == trained_smoke["epochs"]


