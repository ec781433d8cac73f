"""mmengine hooks that training runs can add to a config (registered in mmdet's HOOKS registry), and the
quiet console that notebooks train under."""
from __future__ import annotations

import contextlib
import io
import logging
import sys
import time
import warnings
from typing import Iterator

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

    def before_val_epoch(self, runner) -> None:
        self.sums, self.count = {}, 0

    def after_val_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
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

    def after_val_epoch(self, runner, metrics=None) -> None:
        import torch
        from mmengine.dist import all_reduce, get_world_size

        if not self.count:
            return
        keys = sorted(self.sums)
        totals = torch.tensor([self.sums[k] for k in keys] + [float(self.count)], dtype=torch.float64)
        if get_world_size() > 1:  # each process saw its share of the val images
            all_reduce(totals, op="sum")
        scalars = {f"val/{k}": float(v / totals[-1]) for k, v in zip(keys, totals[:-1].tolist())}
        runner.visualizer.add_scalars(scalars, step=runner.epoch)  # one record in vis_data/scalars.json
        runner.logger.info("val losses: " + "  ".join(f"{k}: {v:.4f}" for k, v in scalars.items()))


@HOOKS.register_module()
class ProgressBarHook(Hook):
    """One tqdm bar over the whole run's iterations: epoch, loss, learning rate, last val mAP and ETA.

    On a console it is tqdm's text bar on stderr. In Jupyter it is the same text in one output
    that each frame replaces (``NotebookLine``), not tqdm.auto's widget: a saved notebook keeps
    a widget's first frame (0 %) as its text, and this output ends as the finished bar.
    Only the main process draws (torchrun starts one hook per process).
    """

    priority = "VERY_LOW"  # after the hooks that log and validate

    def __init__(self, metric: str = "coco/bbox_mAP", mininterval: float = 1.0, stderr=None):
        self.metric = metric
        self.mininterval = mininterval
        # the console's stderr when the hook is made, whatever a quiet console redirects later
        self.stderr = stderr or sys.stderr
        self.bar = None
        self.fields = {"epoch": "", "loss": "-", "lr": "-", "mAP": "-"}  # the bar's postfix, in this order

    def before_train(self, runner) -> None:
        from mmengine.dist import is_main_process

        if not is_main_process():
            return
        self.bar = progress_bar(runner.max_iters, "train", initial=runner.iter, file=self.stderr,
                                mininterval=self.mininterval)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self.bar is None:
            return
        loss = (outputs or {}).get("loss")
        self.fields["epoch"] = f"{runner.epoch + 1}/{runner.max_epochs}"
        if loss is not None:
            self.fields["loss"] = f"{float(loss):.3f}"
        self.fields["lr"] = f"{runner.optim_wrapper.get_lr()['lr'][0]:.1e}"
        self.bar.set_postfix_str(self.postfix(), refresh=False)
        self.bar.update(1)

    def after_val_epoch(self, runner, metrics=None) -> None:
        if self.bar is not None and metrics and self.metric in metrics:
            self.fields["mAP"] = f"{float(metrics[self.metric]):.3f}"
            self.bar.set_postfix_str(self.postfix(), refresh=False)

    def postfix(self) -> str:
        return ", ".join(f"{key} {value}" for key, value in self.fields.items())

    def after_train(self, runner) -> None:
        if self.bar is None:
            return
        self.bar.refresh()
        self.bar.close()
        self.bar = None


def in_notebook() -> bool:
    """True inside a Jupyter kernel (tqdm.autonotebook's test)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def progress_bar(total: int, desc: str, unit: str = "it", initial: int = 0, file=None, mininterval: float = 1.0):
    """A tqdm bar with ETA: tqdm's text on ``file`` (stderr) on a console, one line updated in place in Jupyter."""
    from tqdm import tqdm

    notebook = in_notebook()
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, file=NotebookLine() if notebook else file,
                ncols=110 if notebook else None, dynamic_ncols=not notebook, mininterval=mininterval)


class NotebookLine:
    """A file for tqdm that shows only its latest frame, as one notebook output updated in place."""

    encoding = "utf-8"  # tqdm draws its unicode blocks into files that say so

    def __init__(self) -> None:
        from IPython.display import display

        self.handle = display({"text/plain": ""}, raw=True, display_id=True)

    def write(self, text: str) -> int:
        frames = [f for f in text.replace("\r", "\n").split("\n") if f.strip()]
        if frames:
            self.handle.update({"text/plain": frames[-1].rstrip()}, raw=True)
        return len(text)

    def flush(self) -> None:
        pass


class QuietConsole:
    """What ``quiet_console`` yields: call ``attach(runner.logger)`` once the Runner exists."""

    def __init__(self, enabled: bool, stdout, stderr) -> None:
        self.enabled = enabled
        self.stdout = stdout  # the console's own streams, for what should still be shown
        self.stderr = stderr
        self.captured = io.StringIO()  # print()s of mmengine, mmdet and pycocotools while quiet
        self.logger = None
        self.pending: list[str] = []  # warnings from before the Runner's log file existed

    def attach(self, logger) -> None:
        """Keep ``logger``'s file handler; its console handler shows errors only."""
        if not self.enabled:
            return
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                handler.setLevel(logging.ERROR)
                handler.setStream(self.stderr)
        self.logger = logger
        for text in self.pending:
            logger.warning(text)
        self.pending.clear()

    def showwarning(self, message, category, filename, lineno, file=None, line=None) -> None:
        """``warnings.showwarning`` while quiet: into the log file instead of stderr."""
        text = warnings.formatwarning(message, category, filename, lineno, line).rstrip()
        if self.logger is not None:
            self.logger.warning(text)
        else:
            self.pending.append(text)


@contextlib.contextmanager
def quiet_console(enabled: bool = True) -> Iterator[QuietConsole]:
    """Inside the block (when ``enabled``), nothing of mmengine's reaches the console.

    mmengine's logger binds its console handler to ``sys.stdout`` when the Runner is built, and
    logs the environment and the whole config right then; building it under a redirected stdout
    sends those to the log file only. ``attach`` then limits the console handler to errors, so
    the per-iteration lines, the hook table, parameter-wise options and "Saving checkpoint" lines
    go to the log file only. Plain ``print``s (pycocotools' evaluation chatter) land in
    ``captured``, Python warnings in the log file. stderr stays free for a progress bar.
    """
    console = QuietConsole(enabled, sys.stdout, sys.stderr)
    if not enabled:
        yield console
        return
    with warnings.catch_warnings(), contextlib.redirect_stdout(console.captured):
        warnings.showwarning = console.showwarning
        yield console
