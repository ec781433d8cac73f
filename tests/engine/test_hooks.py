"""The hooks a config can name: the time budget and the progress bar."""
import types

import torch

from balloondet.engine.hooks import TimeBudgetHook


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
