"""The `train`, `test` and `curves` steps: config handling, learning, resume, several processes."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
from conftest import REPO

from balloondet.cli import main
from balloondet.config import build_config
from balloondet.curves import plot_curves, read_scalars
from balloondet.errors import TrainError
from balloondet.evaluate import evaluate_checkpoint
from balloondet.train import check_load_from

SMOKE = "rtmdet_tiny_smoke_synthetic"


def test_unreachable_load_from_stops_and_names_from_scratch(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cfg = build_config(SMOKE, cfg_options={"load_from": "http://127.0.0.1:9/rtmdet_tiny.pth"})
    with pytest.raises(TrainError, match="--from-scratch"):
        check_load_from(cfg)
    assert not list(tmp_path.rglob("*.pth"))


def test_load_from_url_is_fetched_into_torch_cache(tmp_path, monkeypatch, http_server):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    served = tmp_path / "served"
    served.mkdir()
    torch.save({"state_dict": {}}, served / "coco.pth")
    base = http_server(served)
    cfg = build_config(SMOKE, cfg_options={"load_from": f"{base}/coco.pth"})
    check_load_from(cfg)
    assert (tmp_path / "torch" / "hub" / "checkpoints" / "coco.pth").read_bytes() == (served / "coco.pth").read_bytes()


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


@pytest.mark.slow
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


@pytest.mark.slow
def test_cli_test_prints_the_coco_summary(trained_smoke, synthetic_root, tmp_path, capsys):
    code = main(["test", SMOKE, str(trained_smoke["checkpoint"]), "--work-dir", str(tmp_path),
                 "--device", "cpu", "--data-root", str(synthetic_root)])
    out = capsys.readouterr().out
    assert code == 0
    summary = [line for line in out.splitlines() if line.strip().startswith("Average ")]
    assert len(summary) == 12, out[-3000:]
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]" in summary[0]


@pytest.mark.slow
def test_training_curves_from_logs(trained_smoke, tmp_path):
    train, val = read_scalars(trained_smoke["work_dir"])
    assert train and val
    assert {"loss", "loss_cls", "loss_bbox", "lr"} <= set(train[-1])
    fig = plot_curves(trained_smoke["work_dir"], out=tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 10_000
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["training loss", "learning rate", "val bbox mAP (COCO)"]
    assert fig.axes[0].get_lines()[0].get_xdata()[-1] == pytest.approx(trained_smoke["epochs"])


def _run_cli(args, env=None, **kw):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "balloondet", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


@pytest.mark.slow
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


@pytest.mark.slow
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
