"""Checkpoints: safe unpickling on both stacks, refusing what does not fit, verified downloads.

The fast tests build their checkpoints from the smoke config's untrained model; the `slow`
ones use the session's trained smoke run.
"""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import shutil
import types

import pytest
import torch

from balloondet import checkpoint as C
from balloondet.checkpoint import (
    CheckpointError,
    CheckpointHashError,
    CheckpointMismatchError,
    UnsafeCheckpointError,
    allow_mmengine_checkpoints,
    check_fits,
    history_buffer_getattr,
    safe_load,
)
from balloondet.cli import main

try:
    from balloondet.config import build_config
except ImportError:  # before the config module existed
    from balloondet.train import build_config

TORCH = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2])
SMOKE = "rtmdet_tiny_smoke_synthetic"


class RunsCode:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def save_malicious(path, marker, **kw):
    torch.save({"state_dict": {}, "meta": {"x": RunsCode(marker)}}, path, **kw)
    return path


@pytest.fixture(scope="module")
def smoke_model():
    """The smoke config's model, untrained (a second to build)."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    register_all_modules()
    return MODELS.build(build_config(SMOKE).model)


@pytest.fixture(scope="module")
def coco_head_state_dict():
    """The same detector with COCO's 80 classes: only the classifier tensors differ."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    register_all_modules()
    cfg = build_config(SMOKE)
    cfg.model.bbox_head.num_classes = 80
    return MODELS.build(cfg.model).state_dict()


@pytest.fixture
def fitting_checkpoint(smoke_model, tmp_path):
    path = tmp_path / "fits.pth"
    torch.save({"state_dict": smoke_model.state_dict(),
                "meta": {"dataset_meta": {"classes": ("balloon",), "palette": [(220, 20, 60)]}}}, path)
    return path


@pytest.fixture
def image(tmp_path):
    from PIL import Image

    path = tmp_path / "img.jpg"
    Image.new("RGB", (64, 48), (200, 30, 30)).save(path)
    return path


# --------------------------------------------------------------------------- safe unpickling

def test_getattr_stand_in_hands_out_only_statistics_methods():
    from mmengine.logging.history_buffer import HistoryBuffer

    assert history_buffer_getattr(HistoryBuffer, "min") is HistoryBuffer.min
    for obj, name in ((HistoryBuffer, "__init__"), (HistoryBuffer, "update"), (pickle, "loads")):
        with pytest.raises(pickle.UnpicklingError, match="not allow-listed"):
            history_buffer_getattr(obj, name)


def mmengine_like_checkpoint():
    """What an mmengine training checkpoint holds: tensors, optimizer state, HistoryBuffers,
    numpy scalars and arrays, sets and bytes."""
    import numpy as np
    from mmengine.logging import MessageHub

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    opt = torch.optim.AdamW(model.parameters(), lr=0.01)
    model(torch.randn(1, 3, 8, 8)).sum().backward()
    opt.step()
    hub = MessageHub.get_instance("test_checkpoint")
    for i in range(3):
        hub.update_scalar("train/loss", np.float64(0.5 + i))
        hub.update_scalar("train/lr", 0.01)
    hub.update_info("epoch", 3)
    return {"meta": {"epoch": 3, "seed": np.int64(5), "arr": np.arange(4, dtype=np.float32), "set": {1, 2},
                     "bytes": b"xy", "dataset_meta": {"classes": ("balloon",), "palette": [(1, 2, 3)]}},
            "state_dict": model.state_dict(), "optimizer": opt.state_dict(), "message_hub": hub.state_dict(),
            "param_schedulers": [{"last_epoch": 3}]}


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


# Hand-written protocol-2 pickles that use only allow-listed globals in ways a checkpoint never
# does; the restricted unpickler (torch < 2.6) must refuse each before it takes effect.
HB = b"cmmengine.logging.history_buffer\nHistoryBuffer\n"


@pytest.mark.parametrize("payload, what", [
    (HB + b"N}X\x03\x00\x00\x00minK\x01s\x86b.", "state of"),  # BUILD on the class: setattr(HistoryBuffer, ...)
    (b"c__builtin__\nset\nK\x01a.", "append to"),  # APPEND onto a class
    (b"c__builtin__\ngetattr\n" + HB + b"X\x08\x00\x00\x00__init__\x86R.", "not allow-listed"),
    (b"(cmmengine.logging.history_buffer\nHistoryBuffer\no.", "OBJ"),  # protocol-0/1 opcodes
    (b"\x82\x01.", "EXT1"),
    (b"cposix\nsystem\nX\x04\x00\x00\x00trueR.", "posix.system"),
])
def test_restricted_unpickler_refuses_crafted_pickles(payload, what):
    from mmengine.logging.history_buffer import HistoryBuffer

    with pytest.raises(pickle.UnpicklingError, match=what):
        C.RestrictedUnpickler(io.BytesIO(b"\x80\x02" + payload)).load()
    assert HistoryBuffer.min is not None and not isinstance(HistoryBuffer.min, int)


def test_restricted_pickle_module_works_through_torch_load(tmp_path):
    """The torch < 2.6 path, exercised on any torch: torch.load(..., pickle_module=...)."""
    marker = tmp_path / "ran"
    torch.save(mmengine_like_checkpoint(), tmp_path / "ok.pth")
    save_malicious(tmp_path / "evil.pth", marker)
    kw = {"weights_only": False} if TORCH >= (2, 6) else {}
    assert "message_hub" in torch.load(tmp_path / "ok.pth", pickle_module=C.restricted_pickle, **kw)
    with pytest.raises(C.RefusedGlobal, match="posix.system"):
        torch.load(tmp_path / "evil.pth", pickle_module=C.restricted_pickle, **kw)
    assert not marker.exists()


def test_every_mmengine_checkpoint_scheme_goes_through_the_safe_loader():
    from mmengine.runner.checkpoint import CheckpointLoader

    allow_mmengine_checkpoints()
    assert CheckpointLoader._get_checkpoint_loader("work_dirs/x.pth") is C.load_from_safe_local
    assert CheckpointLoader._get_checkpoint_loader("https://x.org/a.pth") is C.load_from_safe_http
    assert CheckpointLoader._get_checkpoint_loader("http://x.org/a.pth") is C.load_from_safe_http
    for other in ("open-mmlab://resnet50", "torchvision://resnet50", "pavi://x", "s3://b/x.pth"):
        with pytest.raises(CheckpointError, match="only from local files and http"):
            CheckpointLoader.load_checkpoint(other)
    assert C.install_safe_checkpoint_loading is allow_mmengine_checkpoints


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

def test_load_model_refuses_malicious_empty_and_mismatched(tmp_path, coco_head_state_dict):
    from balloondet.model import load_model

    marker = tmp_path / "ran"
    with pytest.raises(UnsafeCheckpointError, match="evil.pth.*posix.system"):
        load_model(SMOKE, save_malicious(tmp_path / "evil.pth", marker), device="cpu")
    assert not marker.exists()
    torch.save({"state_dict": {}}, tmp_path / "empty.pth")
    with pytest.raises(CheckpointMismatchError, match=r"empty.pth: (\d+) of \1 model tensors missing"):
        load_model(SMOKE, tmp_path / "empty.pth", device="cpu")
    torch.save({"state_dict": coco_head_state_dict}, tmp_path / "coco80.pth")
    with pytest.raises(CheckpointMismatchError, match=r"0 of \d+ model tensors missing, 6 shape mismatches.*rtm_cls"):
        load_model(SMOKE, tmp_path / "coco80.pth", device="cpu")


def test_load_model_accepts_a_fitting_checkpoint(fitting_checkpoint, smoke_model):
    from balloondet.model import load_model

    model = load_model(SMOKE, fitting_checkpoint, device="cpu")
    key = "backbone.stem.0.conv.weight"
    assert torch.equal(model.state_dict()[key], smoke_model.state_dict()[key])


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

def test_check_fits_counts_missing_and_mismatched(smoke_model, coco_head_state_dict, tmp_path):
    state_dict = smoke_model.state_dict()
    assert check_fits(smoke_model, {"state_dict": state_dict}, "x.pth").missing == []
    assert check_fits(smoke_model, {f"module.{k}": v for k, v in state_dict.items()}, "x.pth").mismatched == []
    partial = {k: v for k, v in state_dict.items() if not k.startswith("neck.")}
    n_neck = len([k for k in state_dict if k.startswith("neck.") and not k.endswith("num_batches_tracked")])
    with pytest.raises(CheckpointMismatchError, match=rf"x.pth: {n_neck} of \d+ model tensors missing, 0 shape"):
        check_fits(smoke_model, partial, "x.pth")
    with pytest.raises(CheckpointMismatchError, match="6 shape mismatches"):
        check_fits(smoke_model, coco_head_state_dict, "coco.pth")
    report = check_fits(smoke_model, coco_head_state_dict, "coco.pth", allow_head_mismatch=True)
    assert len(report.skipped_head) == 6 and not report.missing and not report.mismatched
    assert report.skipped_line() == ("coco.pth: not loading 6 class-count-dependent head tensors "
                                     "(bbox_head.rtm_cls.*: 80 class outputs in the checkpoint, 1 in the model); "
                                     "they start from their initialisation")
    other = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Linear(8, 2)).state_dict()
    for lenient in (False, True):  # another model: refused even for fine-tuning
        with pytest.raises(CheckpointMismatchError, match="is this a checkpoint of this config"):
            check_fits(smoke_model, other, "other.pth", allow_head_mismatch=lenient)
    with pytest.raises(CheckpointMismatchError, match="holds no state dict"):
        check_fits(smoke_model, [1, 2], "list.pth")


def test_check_fits_reuses_what_safe_load_read(smoke_model, fitting_checkpoint):
    safe_load(fitting_checkpoint)
    assert check_fits(smoke_model, None, fitting_checkpoint).total > 200


def test_fit_hook_drops_class_count_dependent_head_tensors_when_fine_tuning(smoke_model, coco_head_state_dict):
    hook = C.fit_check_hook(allow_head_mismatch=True)
    runner = types.SimpleNamespace(model=smoke_model, _resume=False, _load_from="coco.pth")
    checkpoint = {"state_dict": dict(coco_head_state_dict)}
    hook.after_load_checkpoint(runner, checkpoint)
    assert not any("rtm_cls" in k for k in checkpoint["state_dict"])
    assert len(checkpoint["state_dict"]) == len(coco_head_state_dict) - 6
    runner._resume = True  # resuming is strict
    with pytest.raises(CheckpointMismatchError):
        hook.after_load_checkpoint(runner, {"state_dict": dict(coco_head_state_dict)})
    with pytest.raises(CheckpointMismatchError):  # test / load_from for evaluation are strict
        C.fit_check_hook().after_load_checkpoint(runner, {"state_dict": dict(coco_head_state_dict)})


# --------------------------------------------------------------------------- downloads

def named_by_hash(folder, data: bytes, digits=8, wrong=False):
    digest = hashlib.sha256(data).hexdigest()[:digits]
    if wrong:
        digest = "0" * digits if digest != "0" * digits else "1" * digits
    path = folder / f"rtmdet_tiny_8xb32-300e_coco_20220902_112414-{digest}.pth"
    path.write_bytes(data)
    return path


def test_hash_prefix_follows_torch_hub():
    assert C.hash_prefix("rtmdet_tiny_8xb32-300e_coco_20220902_112414-78e30dcc.pth") == "78e30dcc"
    assert C.hash_prefix("https://x.org/a/resnet18-5c106cde.pth?x=1") == "5c106cde"
    for name in ("epoch_30.pth", "model-face.pth", "cspnext-tiny_imagenet_600e.pth"):
        assert C.hash_prefix(name) is None


def test_verify_hash_prefix(tmp_path):
    good = named_by_hash(tmp_path, b"weights")
    assert C.verify_hash_prefix(good) is True and good.exists()
    assert C.verify_hash_prefix(named_by_hash(tmp_path, b"weights", digits=12)) is True
    plain = tmp_path / "epoch_1.pth"
    plain.write_bytes(b"x")
    assert C.verify_hash_prefix(plain) is False
    bad = named_by_hash(tmp_path, b"tampered", wrong=True)
    with pytest.raises(CheckpointHashError, match="does not match|but the file name says") as err:
        C.verify_hash_prefix(bad, source="https://x.org/bad.pth")
    assert str(bad) in str(err.value) and "deleted" in str(err.value)
    assert not bad.exists()


def test_download_verifies_fresh_and_cached_copies(tmp_path, monkeypatch, http_server):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    served = tmp_path / "served"
    served.mkdir()
    buf = io.BytesIO()
    torch.save({"state_dict": {"w": torch.ones(2)}}, buf)
    good = named_by_hash(served, buf.getvalue())
    bad = named_by_hash(served, buf.getvalue() + b"!", wrong=True)
    base = http_server(served)
    cache = tmp_path / "torch" / "hub" / "checkpoints"

    assert C.download_checkpoint(f"{base}/{good.name}") == cache / good.name
    with pytest.raises(CheckpointHashError):
        C.download_checkpoint(f"{base}/{bad.name}")
    assert not (cache / bad.name).exists()

    shutil.copy(good, cache / bad.name)  # a damaged copy already in the cache: refused before use
    with pytest.raises(CheckpointHashError):
        C.download_checkpoint(f"{base}/{bad.name}")
    assert not (cache / bad.name).exists()

    from mmengine.runner.checkpoint import _load_checkpoint  # load_from URLs take the same road

    allow_mmengine_checkpoints()
    assert torch.equal(_load_checkpoint(f"{base}/{good.name}")["state_dict"]["w"], torch.ones(2))
    with pytest.raises(CheckpointHashError):
        _load_checkpoint(f"{base}/{bad.name}")


def test_check_load_from_deletes_a_download_that_fails_its_hash(tmp_path, monkeypatch, http_server):
    try:
        from balloondet.config import check_load_from
    except ImportError:
        from balloondet.train import check_load_from
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    served = tmp_path / "served"
    served.mkdir()
    bad = named_by_hash(served, b"not the published file", wrong=True)
    cfg = build_config(SMOKE, cfg_options={"load_from": f"{http_server(served)}/{bad.name}"})
    with pytest.raises(CheckpointHashError):
        check_load_from(cfg)
    assert not list((tmp_path / "torch").rglob("*.pth"))


# --------------------------------------------------------------------------- a real trained run

@pytest.mark.slow
def test_training_checkpoint_loads_safely(trained_smoke):
    path = trained_smoke["work_dir"] / f"epoch_{trained_smoke['epochs']}.pth"  # with optimizer and message hub
    ckpt = safe_load(path)
    assert {"state_dict", "message_hub", "optimizer", "meta"} <= set(ckpt)
    assert ckpt["meta"]["epoch"] == trained_smoke["epochs"]
    if TORCH >= (2, 6):
        allow_mmengine_checkpoints()
        assert torch.load(path, map_location="cpu", weights_only=True)["meta"]["epoch"] == trained_smoke["epochs"]


@pytest.mark.slow
def test_trained_checkpoint_loads_and_resumes(trained_smoke, synthetic_root, tmp_path):
    from balloondet.model import load_model
    from balloondet.train import train

    model = load_model(SMOKE, trained_smoke["checkpoint"], device="cpu")
    assert check_fits(model, None, trained_smoke["checkpoint"]).missing == []
    work_dir = tmp_path / "resumed"
    work_dir.mkdir()
    last = trained_smoke["work_dir"] / f"epoch_{trained_smoke['epochs']}.pth"
    (work_dir / "last_checkpoint").write_text(str(last))
    epochs = trained_smoke["epochs"] + 1
    train(SMOKE, work_dir=work_dir, device="cpu", epochs=epochs, resume=True, data_root=synthetic_root)
    assert (work_dir / f"epoch_{epochs}.pth").is_file()


@pytest.mark.slow
def test_fine_tuning_skips_the_class_count_dependent_head_in_one_line(coco_head_state_dict, synthetic_root, tmp_path):
    """load_from a COCO-like (80-class) checkpoint into the 1-class model: one epoch."""
    from balloondet.train import train

    torch.save({"state_dict": coco_head_state_dict, "meta": {}}, tmp_path / "coco80.pth")
    work_dir = tmp_path / "fine_tuned"
    train(SMOKE, work_dir=work_dir, device="cpu", epochs=1, data_root=synthetic_root,
          cfg_options={"load_from": str(tmp_path / "coco80.pth")})
    log = "\n".join(p.read_text() for p in work_dir.rglob("*.log"))
    lines = [line for line in log.splitlines() if "class-count-dependent head tensors" in line]
    assert len(lines) == 1
    assert "not loading 6" in lines[0] and "80 class outputs in the checkpoint, 1 in the model" in lines[0]
    assert (work_dir / "epoch_1.pth").is_file()
