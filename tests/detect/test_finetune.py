"""Fine-tuning from the COCO checkpoint on the CPU: the checkpoint is checked before anything is trained or
written (unreadable, truncated, another model), its download shows progress and leaves nothing partial, and
the CPU fine-tune trains the neck and head around a frozen backbone."""
from __future__ import annotations

import http.server
import io
import urllib.request

import pytest
import torch
from conftest import SMOKE, named_by_hash

from balloondet import cli
from balloondet.core import defaults
from balloondet.core.errors import (
    CheckpointError,
    CheckpointHashError,
    CheckpointMismatchError,
    TrainError,
    UnsafeCheckpointError,
)
from balloondet.detect.test import evaluate_checkpoint
from balloondet.detect.train import check_load_from, train
from balloondet.engine.checkpoint import safe_load
from balloondet.engine.config import build_config

FINETUNE = defaults.CPU_FINETUNE_CONFIG


def checkpoint_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


@pytest.fixture
def torch_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch"


def files_in(folder):
    return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


# --- what a user may hand over instead of the COCO checkpoint -------------------------------------
class YoloDetectionModel(torch.nn.Module):
    """Stands for the pickled model object an Ultralytics ``.pt`` holds."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 16, 3)


def rtmdet_s_state_dict():
    """RTMDet-s (another size of the same family): the same tensor names, other shapes."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    register_all_modules()
    cfg = build_config(SMOKE)
    cfg.model.backbone.update(deepen_factor=0.33, widen_factor=0.5)
    cfg.model.neck.update(in_channels=[128, 256, 512], out_channels=128, num_csp_blocks=1)
    cfg.model.bbox_head.update(in_channels=128, feat_channels=128, num_classes=80)
    return MODELS.build(cfg.model).state_dict()


def bad_file(kind, folder, coco):
    """``(file name, bytes, the error it must raise, what the message must say)``."""
    if kind == "not a checkpoint":  # e.g. a login page saved instead of the file
        return "coco.pth", b"<html><body>Sign in to download</body></html>", CheckpointError, "not a readable PyTorch"
    if kind == "truncated":
        return "coco.pth", checkpoint_bytes({"state_dict": coco})[:1_000_000], CheckpointError, "not a readable PyTorch"
    if kind == "another RTMDet size":
        return ("rtmdet_s.pth", checkpoint_bytes({"state_dict": rtmdet_s_state_dict()}), CheckpointMismatchError,
                r"backbone \d+ % .*neck \d+ % .*fine-tuning needs at least 90 % of the backbone and the neck")
    if kind == "a YOLO .pt":
        return ("yolov8n.pt", checkpoint_bytes({"model": YoloDetectionModel(), "epoch": -1}), UnsafeCheckpointError,
                "YoloDetectionModel")
    if kind == "an ImageNet classifier":  # cspnext-tiny_imagenet_600e.pth's layout: the backbone and a classifier
        state = {k: v for k, v in coco.items() if k.startswith("backbone.")}
        state |= {"head.fc.weight": torch.zeros(1000, 384), "head.fc.bias": torch.zeros(1000)}
        return ("cspnext-tiny_imagenet_600e.pth", checkpoint_bytes({"state_dict": state}), CheckpointMismatchError,
                r"backbone 100 % .*neck 0 % \(0 of \d+ tensors\).*needs at least 90 % of the neck")
    raise ValueError(kind)


BAD = ["not a checkpoint", "truncated", "another RTMDet size", "a YOLO .pt", "an ImageNet classifier"]


@pytest.mark.parametrize("kind", BAD)
def test_a_bad_given_file_is_refused_before_anything_is_written(kind, tmp_path, coco_head_state_dict, synthetic_root,
                                                                torch_cache):
    name, data, error, message = bad_file(kind, tmp_path, coco_head_state_dict)
    given = tmp_path / name
    given.write_bytes(data)
    work = tmp_path / "run"
    with pytest.raises(error, match=message) as err:
        train(defaults.AUTO, work_dir=work, device="cpu", data_root=synthetic_root, load_from=given)
    assert str(given) in str(err.value) and "\n" not in str(err.value)
    assert not work.exists()  # nothing trained, nothing written
    assert given.read_bytes() == data  # the user's file is left as it was


@pytest.mark.parametrize("kind", ["not a checkpoint", "truncated", "an ImageNet classifier"])
def test_a_bad_download_is_refused_and_removed_from_the_cache(kind, tmp_path, coco_head_state_dict, http_server,
                                                              torch_cache):
    name, data, error, message = bad_file(kind, tmp_path, coco_head_state_dict)
    served = tmp_path / "zoo"
    served.mkdir()
    (served / name).write_bytes(data)
    cfg = build_config(FINETUNE, cfg_options={"load_from": f"{http_server(served)}/{name}"})
    with pytest.raises(error, match=message) as err:
        check_load_from(cfg)
    assert "(deleted from the cache)" in str(err.value)
    assert files_in(torch_cache) == []  # the next run neither finds it "at hand" nor trusts it


def test_a_given_file_failing_its_hash_is_refused_and_kept(tmp_path, coco_head_state_dict):
    given = named_by_hash(tmp_path, checkpoint_bytes({"state_dict": coco_head_state_dict}), wrong=True)
    cfg = build_config(FINETUNE, cfg_options={"load_from": str(given)})
    with pytest.raises(CheckpointHashError, match="but the file name says 0+"):
        check_load_from(cfg)
    assert given.is_file()  # the user's own file: not ours to delete


def test_load_from_and_from_scratch_together_are_refused(tmp_path):
    with pytest.raises(TrainError, match="opposite"):
        train(defaults.AUTO, work_dir=tmp_path / "run", device="cpu", load_from="coco.pth", from_scratch=True)


def test_the_cli_says_why_in_one_line(tmp_path, capsys, synthetic_root, torch_cache):
    bad = tmp_path / "coco.pth"
    bad.write_bytes(b"not a checkpoint")
    rc = cli.main(["train", "auto", "--load-from", str(bad), "--device", "cpu", "--data-root", str(synthetic_root),
                   "--work-dir", str(tmp_path / "run")])
    captured = capsys.readouterr()
    assert rc == 2 and "rtmdet_tiny_cpu-finetune_balloon (no CUDA device, and a checkpoint was given" in captured.out
    error = captured.err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith(f"balloondet train: error: {bad}: not a readable PyTorch")
    assert not (tmp_path / "run").exists()


# --- the download --------------------------------------------------------------------------------
class CutShort(http.server.BaseHTTPRequestHandler):
    """Promises a megabyte, sends a kilobyte, hangs up."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "1000000")
        self.end_headers()
        self.wfile.write(b"x" * 1000)

    def log_message(self, *args):
        pass


def test_a_download_cut_short_leaves_no_file_in_the_cache(tmp_path, http_server, torch_cache):
    url = f"{http_server(tmp_path, handler=CutShort)}/rtmdet_tiny_coco.pth"
    cfg = build_config(FINETUNE, cfg_options={"load_from": url})
    with pytest.raises(TrainError, match=r"cannot fetch the pretrained checkpoint .*download (incomplete|failed).*"
                                         r"--load-from PATH.*--from-scratch"):
        check_load_from(cfg)
    assert files_in(torch_cache) == []


def test_an_interrupted_download_leaves_no_file_in_the_cache(tmp_path, monkeypatch, torch_cache):
    class Response(io.BytesIO):
        headers = {"Content-Length": str(3 << 20)}

        def read(self, n=-1):
            if self.tell():  # Ctrl-C after the first megabyte
                raise KeyboardInterrupt
            return super().read(n)

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: Response(b"w" * (3 << 20)))
    cfg = build_config(FINETUNE, cfg_options={"load_from": "https://example.org/rtmdet_tiny_coco.pth"})
    with pytest.raises(KeyboardInterrupt):
        check_load_from(cfg)
    assert files_in(torch_cache) == []


def test_the_download_shows_its_size_and_progress(tmp_path, http_server, torch_cache, coco_head_state_dict, capsys):
    from balloondet.engine.download import download_checkpoint

    served = tmp_path / "zoo"
    served.mkdir()
    (served / "coco.pth").write_bytes(checkpoint_bytes({"state_dict": coco_head_state_dict}))
    download_checkpoint(f"{http_server(served)}/coco.pth", progress=True)
    bar = capsys.readouterr().err.replace("\r", "\n").splitlines()
    last = [line for line in bar if line.startswith("download coco.pth")][-1]
    size = (served / "coco.pth").stat().st_size / 2**20
    assert "100%" in last and f"{size:.1f}M/{size:.1f}M" in last, last


# --- the CPU fine-tune ---------------------------------------------------------------------------
@pytest.mark.train
def test_cpu_fine_tune_from_a_coco_checkpoint_over_http(tmp_path, http_server, synthetic_root, coco_head_state_dict,
                                                        torch_cache, capsys):
    """One epoch of the CPU recipe from an 80-class COCO-shaped checkpoint served over loopback, then `test`."""
    served = tmp_path / "zoo"
    served.mkdir()
    coco = {k: v.clone() for k, v in coco_head_state_dict.items()}
    for key, value in coco.items():  # not what a fresh model starts from
        if value.is_floating_point() and "running_var" not in key:
            value.add_(0.01 * torch.randn_like(value))
    path = named_by_hash(served, checkpoint_bytes({"meta": {"epoch": 300}, "state_dict": coco}))
    work = train(FINETUNE, work_dir=tmp_path / "run", device="cpu", epochs=1, data_root=synthetic_root,
                 load_from=f"{http_server(served)}/{path.name}", precision="fp32", quiet=True)
    out = capsys.readouterr().out
    assert "6 class-count-dependent head tensors left out (80 classes in the checkpoint, 1 in the model)" in out, out
    trained = safe_load(work / "epoch_1.pth")["state_dict"]
    backbone = [k for k in coco if k.startswith("backbone.")]
    assert len(backbone) > 100
    assert [k for k in backbone if not torch.equal(trained[k], coco[k])] == []  # frozen: bit-identical, BN stats too
    neck = [k for k in coco if k.startswith("neck.") and k.endswith(".weight")]
    assert sum(not torch.equal(trained[k], coco[k]) for k in neck) > len(neck) // 2  # the neck trained
    assert trained["bbox_head.rtm_cls.0.weight"].shape[0] == 1
    metrics = evaluate_checkpoint(FINETUNE, work / "epoch_1.pth", device="cpu", data_root=synthetic_root,
                                  precision="fp32", quiet=True, bootstrap=0)
    assert 0.0 <= metrics["coco/bbox_mAP"] <= 1.0 and (work / "test_metrics.json").is_file()
