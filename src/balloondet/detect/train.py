"""The `train` step: mmengine's Runner on an mmdet config, with the few knobs people need."""
from __future__ import annotations

import os
import os.path as osp
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from balloondet.core import defaults
from balloondet.core.console import quiet_console
from balloondet.core.errors import CheckpointError, DownloadError, TrainError
from balloondet.core.files import display_path
from balloondet.engine.checkpoint import allow_mmengine_checkpoints
from balloondet.engine.compat import runner_device, unformatted_config_text
from balloondet.engine.config import (
    build_config,
    init_cpu_process_group,
    pick_device,
    read_saved_config,
    resolve_recipe,
)
from balloondet.engine.cores import cores_line, set_threads
from balloondet.engine.detector import find_checkpoint
from balloondet.engine.download import download_checkpoint, hub_cache_path, verify_hash_prefix
from balloondet.engine.precision import resolve_precision

if TYPE_CHECKING:
    from mmengine.config import Config

    from balloondet.engine.checkpoint_fit import FitReport


def check_load_from(cfg: Config) -> FitReport | None:
    """Make ``load_from`` a verified local file that fits the model, before anything is trained or written.

    A URL is fetched into torch's hub cache (progress bar, nothing partial left behind); a name with a
    hash prefix is checked (a failing download deleted, a given file left alone); the file is read with
    the safe loader and must fit enough of the backbone and the neck (``checkpoint_fit.check_pretrained``).
    A downloaded file that fails is removed from the cache. ``cfg.load_from`` then names the local
    file. Prints how much of it fits, in one line; returns the fit report (None: no ``load_from``).
    """
    from balloondet.engine.checkpoint_fit import check_pretrained

    src = cfg.get("load_from")
    if not src:
        return None
    downloaded = str(src).startswith(("http://", "https://"))
    if downloaded:
        try:  # into torch's hub cache, hash-prefix checked (a cached copy too)
            local = download_checkpoint(src, progress=True)
        except DownloadError as err:  # refused, offline, cut short: nothing was kept
            raise TrainError(
                f"cannot fetch the pretrained checkpoint ({err}). Offline? Download it elsewhere and pass the "
                f"file with --load-from PATH (or put it at {hub_cache_path(src)}), or train without pretrained "
                f"weights with --from-scratch") from None
    else:
        local = Path(osp.expanduser(str(src)))
        if not local.is_file():
            raise TrainError(f"load_from checkpoint not found: {src}. Train with --from-scratch to start without it.")
        verify_hash_prefix(local, delete=False)
    try:
        report = check_pretrained(cfg, local)
    except CheckpointError as err:
        if downloaded:  # so that the next run neither finds it "at hand" nor trusts it
            local.unlink(missing_ok=True)
            err.args = (f"{err} (deleted from the cache)",)
        raise
    cfg.load_from = str(local)
    print(f"pretrained weights: {report.fine_tune_line()}")
    return report


def train(config: str | Path, work_dir: str | Path | None = None, device: str = defaults.DEVICE,
          epochs: int | None = None, from_scratch: bool = False, resume: bool = False,
          cfg_options: dict | None = None, launcher: str = "none", data_root: str | Path | None = None,
          time_budget: float | None = None, precision: str = defaults.PRECISION, quiet: bool = False,
          retrain: bool = False, val_loss: bool = True, load_from: str | Path | None = None,
          image_cache: bool = defaults.IMAGE_CACHE, threads: int | None = None) -> Path:
    """Train; returns the work dir. Checkpoints, logs and curves' data end up there.

    ``config`` ``auto`` picks the recipe for this machine (``engine.config.choose_recipe``).
    ``time_budget`` (seconds) ends the run after the first epoch that finishes past it.
    A finished run in the work dir (its final epoch's checkpoint is there) is reused, an interrupted
    one resumed; ``retrain`` moves either to ``WORK_DIR/previous/`` and trains from the start.
    ``quiet``: a progress bar instead of mmengine's console log (which still goes to the log file).
    ``precision``: ``auto`` (bf16 autocast on a CPU with native bfloat16), ``fp32`` or ``bf16``.
    ``val_loss``: the losses on the val split at each validation (``hooks.ValLossHook``).
    ``load_from``: a checkpoint (path or URL) to fine-tune from instead of the config's; ``auto`` then
    picks a fine-tuning recipe. It is checked before anything is trained (``check_load_from``).
    ``image_cache``: decode each image once (``engine.image_cache``), where the memory allows.
    ``threads``: torch's intra-op threads (None: the cores this process may use, ``engine.cores``, as the
    dataloaders' ``num_workers='auto'``).
    """
    if load_from and from_scratch:
        raise TrainError(f"load_from={load_from} and from_scratch=True ask for opposite things: drop one of them")
    device = pick_device(device)
    config = resolve_recipe(config, device, load_from=load_from, from_scratch=from_scratch)
    precision, why = resolve_precision(precision, device)
    if not quiet:
        print(f"precision: {why}")
    cfg = build_config(config, work_dir=work_dir, epochs=epochs, from_scratch=from_scratch, resume=resume,
                       cfg_options=cfg_options, launcher=launcher, device=device, data_root=data_root,
                       precision=precision)
    set_threads(threads)
    if not quiet:
        print(cores_line(cfg))
    if load_from:
        cfg.load_from = str(load_from)
    if retrain and resume:
        raise TrainError("retrain=True starts over and resume=True continues: ask for one of them")
    state, done = run_state(cfg)
    if state == "finished" and not retrain:
        print(f"{display_path(cfg.work_dir)} holds the finished run (epoch {done} of {done}): reusing it "
              f"(retrain=True / --retrain trains again)")
        return Path(cfg.work_dir)
    resume = state == "interrupted" and not retrain  # an explicit resume with nothing to resume starts over
    if not resume:
        cfg.resume = False
        check_load_from(cfg)  # before anything is moved or written: a bad checkpoint stops here
    if state != "new" and retrain:
        move_run_aside(cfg.work_dir)
    if resume:
        print(f"resuming the interrupted run in {display_path(cfg.work_dir)} after epoch {done} "
              f"of {cfg.train_cfg.max_epochs}")
        cfg.resume = True
        cfg.load_from = None  # mmengine resumes *from* load_from when one is set: the work dir's latest instead
    if time_budget:
        cfg.custom_hooks = [*cfg.get("custom_hooks", []), dict(type="TimeBudgetHook", seconds=time_budget)]

    from mmdet.utils import register_all_modules
    from mmengine.runner import Runner

    register_all_modules()
    from balloondet.engine import hooks  # registers TimeBudgetHook, ProgressBarHook and ValLossHook
    from balloondet.engine.checkpoint_fit import CheckpointFitHook
    from balloondet.engine.image_cache import use_image_cache

    if image_cache:
        use_image_cache(cfg)

    allow_mmengine_checkpoints()  # --resume and load_from read checkpoints
    if launcher != "none" and device == "cpu":
        init_cpu_process_group(cfg)
    with runner_device(device), unformatted_config_text(), quiet_console(quiet) as console:
        runner = Runner.from_cfg(cfg)
        console.attach(runner.logger)
        runner.register_hook(CheckpointFitHook(allow_head_mismatch=True))  # strict on --resume
        if quiet:
            runner.register_hook(hooks.ProgressBarHook(stderr=console.stderr))
        if val_loss:
            runner.register_hook(hooks.ValLossHook())
        runner.train()
    if quiet:
        print(f"trained {runner.epoch} of {cfg.train_cfg.max_epochs} epochs; "
              f"log: {display_path(runner.logger.log_file)}")
        print(f"checkpoint: {display_path(find_checkpoint(cfg.work_dir))}")
    return Path(cfg.work_dir)


def checkpoint_pattern(cfg: Config) -> tuple[Path, re.Pattern]:
    """The folder of a run's epoch checkpoints and the pattern of their names (group 1: the epoch)."""
    hook = cfg.get("default_hooks", {}).get("checkpoint") or {}
    folder = Path(cfg.work_dir)
    if hook.get("out_dir"):  # mmengine puts them in OUT_DIR/<work dir's name>
        folder = Path(hook["out_dir"]) / folder.name
    template = hook.get("filename_tmpl", "epoch_{}.pth")
    return folder, re.compile(re.escape(template).replace(r"\{\}", r"(\d+)") + "$")


def run_state(cfg: Config) -> tuple[str, int]:
    """``("new" | "interrupted" | "finished", last epoch checkpointed)`` of the run ``cfg`` describes.

    Finished: the final epoch's checkpoint (``epoch_<max_epochs>.pth``) is in the work dir. A
    checkpoint past the final epoch, or a saved config with another schedule, means the work dir
    holds another run: resuming it would mix two schedules, so that is an error.
    """
    folder, pattern = checkpoint_pattern(cfg)
    max_epochs = cfg.train_cfg.max_epochs
    epochs = [int(m.group(1)) for p in folder.glob("*.pth") if (m := pattern.match(p.name))] if folder.is_dir() else []
    if not epochs:
        return "new", 0
    done = max(epochs)
    saved = saved_max_epochs(cfg.work_dir)
    if done > max_epochs or (saved is not None and saved != max_epochs):
        raise TrainError(f"{display_path(cfg.work_dir)} holds a run of {saved or done} epochs (epoch_{done}.pth), "
                         f"this one has {max_epochs}: pass retrain=True (--retrain) to start over there, "
                         f"or another work dir")
    return ("finished" if done == max_epochs else "interrupted"), done


def saved_max_epochs(work_dir: str | Path) -> int | None:
    """``train_cfg.max_epochs`` of the config mmengine saved into ``work_dir`` (None: none readable)."""
    cfg = read_saved_config(work_dir)
    return None if cfg is None else int(cfg.train_cfg.max_epochs)


def move_run_aside(work_dir: str | Path) -> Path:
    """Move everything in ``work_dir`` to ``work_dir/previous/`` (replacing an older one); returns it.

    A retrained run must not share the folder with the earlier one: the curves read every
    ``*/vis_data/scalars.json`` there, and ``find_checkpoint`` the newest best checkpoint.
    """
    work_dir = Path(work_dir)
    previous = work_dir / "previous"
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one process moves
        if previous.exists():
            shutil.rmtree(previous)
        previous.mkdir()
        for entry in work_dir.iterdir():
            if entry != previous:
                entry.rename(previous / entry.name)
        print(f"retraining: the earlier run in {display_path(work_dir)} moved to {display_path(previous)}")
    return previous
