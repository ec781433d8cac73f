"""The `train` step: pretrained weights, learning, reused, resumed and retrained runs, several processes."""
from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
from conftest import REPO, SMOKE, named_by_hash

from balloondet.core.errors import CheckpointHashError, TrainError
from balloondet.detect.curves import read_scalars
from balloondet.detect.test import evaluate_checkpoint
from balloondet.detect.train import check_load_from, move_run_aside, run_state, train
from balloondet.engine.checkpoint import safe_load
from balloondet.engine.checkpoint_fit import check_fits
from balloondet.engine.config import build_config


def test_unreachable_load_from_stops_and_names_from_scratch(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cfg = build_config(SMOKE, cfg_options={"load_from": "http://127.0.0.1:9/rtmdet_tiny.pth"})
    with pytest.raises(TrainError, match="--from-scratch"):
        check_load_from(cfg)
    assert not list(tmp_path.rglob("*.pth"))


def test_load_from_url_is_fetched_into_torch_cache(tmp_path, monkeypatch, http_server, coco_head_state_dict, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    served = tmp_path / "served"
    served.mkdir()
    torch.save({"state_dict": coco_head_state_dict}, served / "coco.pth")
    base = http_server(served)
    cfg = build_config(SMOKE, cfg_options={"load_from": f"{base}/coco.pth"})
    report = check_load_from(cfg)
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "coco.pth"
    assert cached.read_bytes() == (served / "coco.pth").read_bytes()
    assert cfg.load_from == str(cached)  # the Runner reads the checked copy
    assert report.part_share("backbone") == report.part_share("neck") == 1.0 and len(report.skipped_head) == 6
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(r"pretrained weights: \S+coco.pth: backbone 100 % \((\d+) of \1 tensors\), neck 100 % "
                        r"\((\d+) of \2 tensors\) fit this model; 6 class-count-dependent head tensors left out "
                        r"\(80 classes in the checkpoint, 1 in the model\)", line), line


def test_missing_local_load_from_is_a_clear_error(tmp_path):
    cfg = build_config(SMOKE, cfg_options={"load_from": str(tmp_path / "nope.pth")})
    with pytest.raises(TrainError, match="not found.*--from-scratch"):
        check_load_from(cfg)


# --- slow: real training on synthetic data -----------------------------------------------
def random_boxes_map(synthetic_root) -> float:
    """COCO mAP of a chance-level detector: 5 random boxes of plausible size per image."""
    import numpy as np
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = COCO(str(synthetic_root / "val.json"))
    rng = np.random.default_rng(0)
    dets = []
    for img in gt.dataset["images"]:
        for _ in range(5):
            w, h = rng.uniform(30, 120, 2)
            x, y = rng.uniform(0, img["width"] - w), rng.uniform(0, img["height"] - h)
            dets.append({"image_id": img["id"], "category_id": 1, "bbox": [x, y, w, h], "score": float(rng.random())})
    ev = COCOeval(gt, gt.loadRes(dets), "bbox")
    ev.evaluate(), ev.accumulate(), ev.summarize()
    return float(ev.stats[0])


@pytest.mark.train
def test_training_learns_what_chance_cannot(trained_smoke, synthetic_root, tmp_path):
    """The smoke model must beat chance by a wide margin on held-out synthetic images.

    Why this is meaningful: the val images are generated with another seed than the train
    images, so the model must generalise; a detector placing random boxes scores ~0.01
    mAP and an untrained RTMDet ~0. Measured: ~0.6 after 30 epochs; we ask for 0.3.
    """
    metrics = evaluate_checkpoint(SMOKE, trained_smoke["checkpoint"], work_dir=tmp_path, device="cpu",
                                  data_root=synthetic_root)
    chance = random_boxes_map(synthetic_root)
    assert chance < 0.05
    assert metrics["coco/bbox_mAP"] >= 0.3, metrics
    assert metrics["coco/bbox_mAP_50"] >= 0.6, metrics
    saved = json.loads((tmp_path / "test_metrics.json").read_text())
    assert saved["metrics"]["coco/bbox_mAP"] == metrics["coco/bbox_mAP"]
    assert (tmp_path / "test_detections.bbox.json").is_file()


def _run_cli(args, env=None, **kw):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "balloondet", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


@pytest.mark.train
@pytest.mark.subprocess
def test_resume_after_kill_loses_no_finished_epoch(synthetic_root, tmp_path):
    work = tmp_path / "run"
    args = ["train", SMOKE, "--work-dir", str(work), "--epochs", "3", "--data-root", str(synthetic_root),
            "--device", "cpu", "--precision", "fp32"]  # fp32 training here; the other runs use bf16 (auto)
    proc = _run_cli(args)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:  # kill it once epoch 2 is safely on disk
        if (work / "last_checkpoint").is_file() and "epoch_2" in (work / "last_checkpoint").read_text():
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.2)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "training ended before it could be killed"

    resumed = _run_cli(args + ["--resume"])
    out, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, out[-3000:]
    assert "resumed epoch: 2" in out.lower() or "resumed epoch 2" in out.lower(), out[-3000:]
    assert "Epoch(train) [2]" not in out and "Epoch(train)  [2]" not in out  # no finished epoch is redone
    train, _ = read_scalars(work)
    iters_per_epoch = sum(r["epoch"] == 1 for r in train)  # the smoke config logs every iteration
    assert iters_per_epoch == 6  # 48 images, batch 8
    assert sorted({r["epoch"] for r in train}) == [1, 2, 3]
    assert train[-1]["epoch"] == 3 and train[-1]["iter"] == 3 * iters_per_epoch  # ends where an uninterrupted run would
    assert (work / "epoch_3.pth").is_file()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.train
@pytest.mark.subprocess
def test_torchrun_two_cpu_processes(synthetic_root, tmp_path):
    work = tmp_path / "ddp"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
           "-m", "balloondet", "train", SMOKE, "--launcher", "pytorch", "--epochs", "1",
           "--work-dir", str(work), "--data-root", str(synthetic_root), "--device", "cpu"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "Distributed training: True" in out, out[-3000:]
    assert (work / "epoch_1.pth").is_file()
    train, val = read_scalars(work)
    assert val
    assert max(r["iter"] for r in train) == 3  # 48 images, batch 8, split over 2 processes


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


@pytest.mark.train
def test_load_from_a_coco_checkpoint_over_http(tmp_path, monkeypatch, http_server, synthetic_root, capfd):
    """load_from a URL: fetched, hash-checked, backbone and neck loaded, the 80-class head skipped in one line."""
    from balloondet.detect.train import train

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
    skipped = [line for line in log.splitlines() if "not loading 6 class-count-dependent head tensors" in line]
    assert len(skipped) == 1 and "80 class outputs in the checkpoint, 1 in the model" in skipped[0], log[-3000:]
    checked = [line for line in log.splitlines() if line.startswith("pretrained weights: ")]  # before training
    assert len(checked) == 1 and "backbone 100 %" in checked[0] and "neck 100 %" in checked[0], log[-3000:]
    from balloondet.engine.checkpoint import safe_load

    trained = safe_load(work / "epoch_1.pth")["state_dict"]  # torch >= 2.6 loads weights only: mmengine's extras
    params = [k for k in coco if k.startswith(("backbone.", "neck.")) and "running_" not in k
              and "num_batches_tracked" not in k]
    assert len(params) > 100
    for key in params:  # the COCO weights but for the EMA's rounding; an initialisation differs by ~0.02
        assert (trained[key] - coco[key]).abs().max() < 1e-5, key
    assert trained["bbox_head.rtm_cls.0.weight"].shape[0] == 1  # the head kept its own, one-class shape


def test_check_load_from_deletes_a_download_that_fails_its_hash(tmp_path, monkeypatch, http_server):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    served = tmp_path / "served"
    served.mkdir()
    bad = named_by_hash(served, b"not the published file", wrong=True)
    cfg = build_config(SMOKE, cfg_options={"load_from": f"{http_server(served)}/{bad.name}"})
    with pytest.raises(CheckpointHashError):
        check_load_from(cfg)
    assert not list((tmp_path / "torch").rglob("*.pth"))


@pytest.mark.train
def test_trained_checkpoint_loads_and_resumes(trained_smoke, synthetic_root, tmp_path):
    from balloondet.detect.train import train
    from balloondet.engine.detector import Detector

    detector = Detector.load(SMOKE, trained_smoke["checkpoint"], device="cpu")
    checkpoint = trained_smoke["checkpoint"]
    assert check_fits(detector.model, safe_load(checkpoint), checkpoint).missing == []
    work_dir = tmp_path / "resumed"
    work_dir.mkdir()
    last = trained_smoke["work_dir"] / f"epoch_{trained_smoke['epochs']}.pth"
    (work_dir / "last_checkpoint").write_text(str(last))
    epochs = trained_smoke["epochs"] + 1
    train(SMOKE, work_dir=work_dir, device="cpu", epochs=epochs, resume=True, data_root=synthetic_root)
    assert (work_dir / f"epoch_{epochs}.pth").is_file()


def fake_run(work_dir, epochs_done, max_epochs):
    """A work dir as mmengine leaves it: the saved config and the last epoch's checkpoint."""
    cfg = build_config(SMOKE, work_dir=work_dir, epochs=max_epochs)
    work_dir.mkdir(parents=True, exist_ok=True)
    cfg.dump(str(work_dir / f"{SMOKE}.py"))
    for epoch in epochs_done:
        (work_dir / f"epoch_{epoch}.pth").write_bytes(b"")
    (work_dir / "best_coco_bbox_mAP_epoch_1.pth").write_bytes(b"")  # not an epoch checkpoint
    return cfg


def test_run_state_from_the_work_dir(tmp_path):
    assert run_state(build_config(SMOKE, work_dir=tmp_path / "none", epochs=3)) == ("new", 0)
    assert run_state(fake_run(tmp_path / "cut", [2], 3)) == ("interrupted", 2)
    assert run_state(fake_run(tmp_path / "done", [3], 3)) == ("finished", 3)


def test_a_work_dir_of_another_schedule_is_an_error(tmp_path):
    fake_run(tmp_path / "run", [3], 3)
    with pytest.raises(TrainError, match="run of 3 epochs.*this one has 5.*retrain=True"):
        run_state(build_config(SMOKE, work_dir=tmp_path / "run", epochs=5))
    fake_run(tmp_path / "longer", [4], 4)
    with pytest.raises(TrainError, match="retrain"):
        run_state(build_config(SMOKE, work_dir=tmp_path / "longer", epochs=2))


def test_retrain_moves_the_earlier_run_aside(tmp_path):
    work = tmp_path / "run"
    fake_run(work, [3], 3)
    (work / "previous").mkdir()
    (work / "previous" / "older.txt").write_text("an older run")
    move_run_aside(work)
    assert [p.name for p in work.iterdir()] == ["previous"]
    assert (work / "previous" / "epoch_3.pth").is_file() and not (work / "previous" / "older.txt").exists()
    assert run_state(build_config(SMOKE, work_dir=work, epochs=3)) == ("new", 0)


def test_retrain_and_resume_together_is_an_error(tmp_path):
    with pytest.raises(TrainError, match="one of them"):
        train(SMOKE, work_dir=tmp_path, device="cpu", retrain=True, resume=True)


def bar_frames(text):
    """The states a tqdm text bar went through (it redraws with carriage returns)."""
    return [f for f in re.split(r"[\r\n]", text) if re.search(r"\d+/\d+ \[", f)]


@pytest.mark.train
def test_quiet_training_shows_a_bar_resumes_and_reuses(synthetic_root, tmp_path, capfd):
    """What a notebook's train cell shows, run three times: cut short, resumed, reused."""
    work = tmp_path / "run"
    kw = dict(work_dir=work, device="cpu", epochs=2, data_root=synthetic_root, quiet=True)
    train(SMOKE, time_budget=1e-3, **kw)  # the budget stops it after epoch 1 of 2: an interrupted run
    assert run_state(build_config(SMOKE, work_dir=work, epochs=2)) == ("interrupted", 1)
    capfd.readouterr()

    train(SMOKE, **kw)
    out, err = capfd.readouterr()
    text = out + err
    assert "\x1b" not in text  # no ANSI colours
    assert "Config:" not in text and "Epoch(train)" not in text and "Saving checkpoint" not in text
    assert len(text.splitlines()) <= 40, text
    assert "resuming the interrupted run" in out and "after epoch 1 of 2" in out
    frames = bar_frames(err)
    assert frames and "100%" in frames[-1] and "12/12" in frames[-1], err[-2000:]  # a finished bar, ends the run
    # mAP: the last val's, or "-" when a 2-epoch model's val had no detection at all (seen on torch 2.14)
    assert re.search(r"epoch 2/2, loss [\d.]+, lr [\d.e+-]+, mAP ([\d.]+|-)\]", frames[-1]), frames[-1]
    assert "checkpoint:" in out.splitlines()[-1]
    logs = sorted(work.glob("*/*.log"))
    assert len(logs) == 2 and "Epoch(train)" in logs[-1].read_text()  # mmengine's log still goes to the file
    train_records, _ = read_scalars(work)
    assert sorted({r["epoch"] for r in train_records}) == [1, 2]  # epoch 1 was not trained again

    assert train(SMOKE, **kw) == work
    out, err = capfd.readouterr()
    assert "holds the finished run" in out and "retrain" in out and not bar_frames(err)
    assert len(sorted(work.glob("*/*.log"))) == 2  # nothing ran
