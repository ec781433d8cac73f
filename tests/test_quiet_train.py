"""Notebook-friendly training and testing: a progress bar, reused and resumed runs, short test output."""
import json
import re

import pytest
import torch

from balloondet.config import build_config
from balloondet.curves import read_scalars
from balloondet.errors import TrainError
from balloondet.io import display_path
from balloondet.train import move_run_aside, run_state, train

SMOKE = "rtmdet_tiny_smoke_synthetic"


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


def test_printed_paths_are_relative(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert display_path(tmp_path / "work_dirs" / "x") == "work_dirs/x"
    assert display_path("work_dirs/x") == "work_dirs/x"


def bar_frames(text):
    """The states a tqdm text bar went through (it redraws with carriage returns)."""
    return [f for f in re.split(r"[\r\n]", text) if re.search(r"\d+/\d+ \[", f)]


def test_the_bar_shows_the_last_val_map(capsys):
    """ProgressBarHook's postfix: epoch, loss and learning rate from each iteration, the mAP from each val."""
    import io
    import types

    from balloondet.hooks import ProgressBarHook

    stream = io.StringIO()
    hook = ProgressBarHook(mininterval=0, stderr=stream)
    runner = types.SimpleNamespace(max_iters=4, iter=0, epoch=0, max_epochs=2,
                                   optim_wrapper=types.SimpleNamespace(get_lr=lambda: {"lr": [0.004]}))
    hook.before_train(runner)
    hook.after_train_iter(runner, 0, outputs={"loss": torch.tensor(1.25)})
    assert hook.postfix() == "epoch 1/2, loss 1.250, lr 4.0e-03, mAP -"
    hook.after_val_epoch(runner, {"coco/bbox_mAP": 0.4567})
    hook.after_val_epoch(runner, {})  # a val without detections keeps the last mAP
    runner.epoch = 1
    hook.after_train_iter(runner, 1, outputs={"loss": torch.tensor(0.5)})
    hook.after_train(runner)
    assert hook.postfix() == "epoch 2/2, loss 0.500, lr 4.0e-03, mAP 0.457"
    assert "mAP 0.457" in stream.getvalue().replace("\r", "\n").splitlines()[-1]


@pytest.mark.slow
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


@pytest.mark.slow
def test_quiet_test_prints_the_summary_and_the_interval(trained_smoke, synthetic_root, tmp_path, capfd):
    from balloondet.evaluate import evaluate_checkpoint, metrics_table

    metrics = evaluate_checkpoint(SMOKE, trained_smoke["checkpoint"], work_dir=tmp_path, device="cpu",
                                  data_root=synthetic_root, quiet=True, bootstrap=100)
    out, err = capfd.readouterr()
    summary = [line for line in out.splitlines() if line.startswith(" Average")]
    assert len(summary) == 12
    assert len((out + err).strip().splitlines()) <= 13, out + err  # the summary (and the precision line)
    lo, hi = metrics["coco/bbox_mAP_ci95_lo"], metrics["coco/bbox_mAP_ci95_hi"]
    assert lo <= metrics["coco/bbox_mAP"] + 5e-4 and metrics["coco/bbox_mAP"] - 5e-4 <= hi  # mmdet rounds to 3
    saved = json.loads((tmp_path / "test_metrics.json").read_text())
    assert saved["bbox_mAP_ci95"] == [lo, hi] and saved["bootstrap"] == 100
    assert "95 % bootstrap interval" in metrics_table(metrics)
