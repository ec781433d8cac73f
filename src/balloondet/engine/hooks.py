"""mmengine hooks that training runs can add to a config (registered in mmdet's HOOKS registry)."""
from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from mmdet.registry import HOOKS
from mmengine.hooks import Hook

from balloondet.core.console import progress_bar


@HOOKS.register_module()
class TimeBudgetHook(Hook):
    """End training after the first epoch that finishes past ``seconds`` of training.

    For runs that must fit a fixed slot (the GPU check's 10-minute command): the last epoch is
    completed and checkpointed as usual, the learning-rate schedule is not stretched, and the
    log says at which epoch of how many the budget stopped the run.
    """

    priority = "LOWEST"  # after the checkpoint hook has saved the epoch

    def __init__(self, seconds: float) -> None:
        self.seconds = float(seconds)
        self.start = 0.0
        self.stopped_at: int | None = None

    def before_train(self, runner: Any) -> None:
        self.start = time.monotonic()

    def after_train_epoch(self, runner: Any) -> None:
        elapsed = time.monotonic() - self.start
        done = runner.epoch + 1  # the loop counts the epoch as finished only after this hook
        if elapsed > self.seconds and done < runner.max_epochs:
            self.stopped_at = done
            runner.logger.warning(f"time budget of {self.seconds:.0f} s spent after {elapsed:.0f} s: "
                                  f"stopping after epoch {done} of {runner.max_epochs}")
            runner.train_loop.stop_training = True


@HOOKS.register_module()
class ValLossHook(Hook):
    """The training losses on the val split at each validation, logged as ``val/loss``, ``val/loss_cls``...

    The val images go through the val pipeline (no augmentation) once more, in ``mode='loss'``,
    with the weights the validation scores (the EMA's, swapped in by ``EMAHook``), under the val
    loop's autocast. mmengine's own val loss (``ValLoop`` picks a ``loss`` element out of
    ``val_step``'s outputs) would need a model that returns one, and its scalars are averaged over
    the last 10 validations by the log processor; these are written as one record per validation.
    Nothing of training is touched: no random numbers are drawn, the model stays in eval mode.
    """

    priority = "LOW"  # after EMAHook (49) has swapped the averaged weights in

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0

    def before_val_epoch(self, runner: Any) -> None:
        self.sums, self.count = {}, 0

    def after_val_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        import torch
        from mmengine.model import is_model_wrapper
        from mmengine.runner.amp import autocast

        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        with torch.no_grad(), autocast(enabled=getattr(runner.val_loop, "fp16", False)):
            data = model.data_preprocessor(data_batch, False)
            losses = model(**data, mode="loss")
        _, log_vars = model.parse_losses(losses)  # 'loss' (their sum), 'loss_cls', 'loss_bbox'
        n = len(data["data_samples"])
        for key, value in log_vars.items():
            self.sums[key] = self.sums.get(key, 0.0) + float(value) * n
        self.count += n

    def after_val_epoch(self, runner: Any, metrics: dict | None = None) -> None:
        import torch
        from mmengine.dist import all_reduce, get_world_size

        if not self.count:
            return
        keys = sorted(self.sums)
        totals = torch.tensor([self.sums[k] for k in keys] + [float(self.count)], dtype=torch.float64)
        if get_world_size() > 1:  # each process saw its share of the val images
            all_reduce(totals, op="sum")
        scalars = {f"val/{k}": float(v / totals[-1]) for k, v in zip(keys, totals[:-1].tolist(), strict=True)}
        runner.visualizer.add_scalars(scalars, step=runner.epoch)  # one record in vis_data/scalars.json
        runner.logger.info("val losses: " + "  ".join(f"{k}: {v:.4f}" for k, v in scalars.items()))


@HOOKS.register_module()
class InferenceTimeHook(Hook):
    """Seconds of the model per test image: from each test batch in hand to its predictions.

    What a test step costs (preprocessing, forward, post-processing, TTA's merge of the augmented
    copies), without data loading, start-up or the evaluation: the figure to compare ``test`` with
    ``test --tta`` by. ``seconds_per_image`` is None before any test batch.
    """

    priority = "VERY_LOW"  # after every other hook's after_test_iter: the step is done

    def __init__(self) -> None:
        self.seconds, self.images, self.started = 0.0, 0, 0.0

    def before_test_iter(self, runner: Any, batch_idx: int, data_batch: Any = None) -> None:
        self.started = time.perf_counter()

    def after_test_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        import torch

        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()  # CUDA runs asynchronously: the step ends when its kernels have
        self.seconds += time.perf_counter() - self.started
        self.images += len(outputs or ())

    @property
    def seconds_per_image(self) -> float | None:
        return self.seconds / self.images if self.images else None


@HOOKS.register_module()
class ProgressBarHook(Hook):
    """One tqdm bar over the whole run's iterations: epoch, loss, learning rate, last val mAP and ETA.

    On a console it is tqdm's text bar on stderr. In Jupyter it is the same text in one output
    that each frame replaces (``NotebookLine``), not tqdm.auto's widget: a saved notebook keeps
    a widget's first frame (0 %) as its text, and this output ends as the finished bar.
    Only the main process draws (torchrun starts one hook per process).
    """

    priority = "VERY_LOW"  # after the hooks that log and validate

    def __init__(self, metric: str = "coco/bbox_mAP", mininterval: float = 1.0, stderr: TextIO | None = None) -> None:
        self.metric = metric
        self.mininterval = mininterval
        # the console's stderr when the hook is made, whatever a quiet console redirects later
        self.stderr = stderr or sys.stderr
        self.bar: Any = None  # a tqdm bar while training
        self.fields = {"epoch": "", "loss": "-", "lr": "-", "mAP": "-"}  # the bar's postfix, in this order

    def before_train(self, runner: Any) -> None:
        from mmengine.dist import is_main_process

        if not is_main_process():
            return
        self.bar = progress_bar(runner.max_iters, "train", initial=runner.iter, file=self.stderr,
                                mininterval=self.mininterval)

    def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None,
                         outputs: dict | None = None) -> None:
        if self.bar is None:
            return
        loss = (outputs or {}).get("loss")
        self.fields["epoch"] = f"{runner.epoch + 1}/{runner.max_epochs}"
        if loss is not None:
            self.fields["loss"] = f"{float(loss):.3f}"
        self.fields["lr"] = f"{runner.optim_wrapper.get_lr()['lr'][0]:.1e}"
        self.bar.set_postfix_str(self.postfix(), refresh=False)
        self.bar.update(1)

    def after_val_epoch(self, runner: Any, metrics: dict | None = None) -> None:
        if self.bar is not None and metrics and self.metric in metrics:
            self.fields["mAP"] = f"{float(metrics[self.metric]):.3f}"
            self.bar.set_postfix_str(self.postfix(), refresh=False)

    def postfix(self) -> str:
        return ", ".join(f"{key} {value}" for key, value in self.fields.items())

    def after_train(self, runner: Any) -> None:
        if self.bar is None:
            return
        self.bar.refresh()
        self.bar.close()
        self.bar: Any = None  # a tqdm bar while training
