"""The hooks a config can name: the time budget, the progress bar, the val loss; the test's timer."""
import json
import types

import pytest
import torch

from balloondet.detect.curves import plot_curves, read_scalars
from balloondet.detect.train import train
from balloondet.engine.hooks import InferenceTimeHook, TimeBudgetHook


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


def test_inference_timer_counts_the_images_of_each_test_step():
    timer = InferenceTimeHook()
    assert timer.seconds_per_image is None  # no test batch yet
    for batch, images in enumerate((["a", "b"], ["c"])):
        timer.before_test_iter(None, batch)
        torch.ones(256, 256) @ torch.ones(256, 256)  # the step: some time passes
        timer.after_test_iter(None, batch, outputs=images)
    assert timer.images == 3 and timer.seconds > 0
    assert timer.seconds_per_image == pytest.approx(timer.seconds / 3)


def test_the_bar_shows_the_last_val_map(capsys):
    """ProgressBarHook's postfix: epoch, loss and learning rate from each iteration, the mAP from each val."""
    import io
    import types

    from balloondet.engine.hooks import ProgressBarHook

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


SMOKE = "rtmdet_tiny_smoke_synthetic"


@pytest.mark.train
def test_val_loss_is_logged_and_leaves_training_alone(synthetic_root, tmp_path):
    kw = dict(device="cpu", epochs=2, data_root=synthetic_root, precision="auto", quiet=True,
              cfg_options={"train_cfg.val_interval": 1, "randomness.seed": 3})
    with_loss = train(SMOKE, work_dir=tmp_path / "with", **kw)
    without = train(SMOKE, work_dir=tmp_path / "without", val_loss=False, **kw)

    train_with, val_with = read_scalars(with_loss)
    train_without, val_without = read_scalars(without)
    # the same seed trains the same weights: every logged training loss is equal, step by step
    keys = ("loss", "loss_cls", "loss_bbox")
    assert [[r[k] for k in keys] for r in train_with] == [[r[k] for k in keys] for r in train_without]
    assert [r["coco/bbox_mAP"] for r in val_with] == [r["coco/bbox_mAP"] for r in val_without]

    assert [r["step"] for r in val_with] == [1, 2]  # one record per validation, at its epoch
    for rec in val_with:
        assert {"val/loss", "val/loss_cls", "val/loss_bbox"} <= set(rec)
        assert rec["val/loss"] == pytest.approx(rec["val/loss_cls"] + rec["val/loss_bbox"], rel=1e-5)
        assert rec["val/loss"] > 0
    assert not any("val/loss" in r for r in val_without)
    # the raw scalars hold the keys as written, in a record of their own
    raw = [json.loads(line) for f in with_loss.glob("*/vis_data/scalars.json") for line in f.read_text().splitlines()]
    assert sum("val/loss" in r for r in raw) == 2

    fig = plot_curves(with_loss, out=tmp_path / "curves.png")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "val/loss" in labels and "loss" in labels
