"""mmengine hooks that training runs can add to a config (registered in mmdet's HOOKS registry)."""
from __future__ import annotations

import time

from mmdet.registry import HOOKS
from mmengine.hooks import Hook


@HOOKS.register_module()
class TimeBudgetHook(Hook):
    """End training after the first epoch that finishes past ``seconds`` of training.

    For runs that must fit a fixed slot (the GPU check's 10-minute command): the last epoch is
    completed and checkpointed as usual, the learning-rate schedule is not stretched, and the
    log says at which epoch of how many the budget stopped the run.
    """

    priority = "LOWEST"  # after the checkpoint hook has saved the epoch

    def __init__(self, seconds: float):
        self.seconds = float(seconds)
        self.start = None
        self.stopped_at = None

    def before_train(self, runner) -> None:
        self.start = time.monotonic()

    def after_train_epoch(self, runner) -> None:
        elapsed = time.monotonic() - self.start
        done = runner.epoch + 1  # the loop counts the epoch as finished only after this hook
        if elapsed > self.seconds and done < runner.max_epochs:
            self.stopped_at = done
            runner.logger.warning(f"time budget of {self.seconds:.0f} s spent after {elapsed:.0f} s: "
                                  f"stopping after epoch {done} of {runner.max_epochs}")
            runner.train_loop.stop_training = True
