"""The `train` step: mmengine's Runner on an mmdet config, with the few knobs people need."""
from __future__ import annotations

import os.path as osp
from pathlib import Path
from typing import TYPE_CHECKING

from . import defaults
from .checkpoint import allow_mmengine_checkpoints, download_checkpoint, fit_check_hook, hub_cache_path
from .config import (
    build_config,
    init_cpu_process_group,
    pick_device,
    resolve_recipe,
    runner_device,
    unformatted_config_text,
)
from .errors import BalloonDetError, TrainError

if TYPE_CHECKING:
    from mmengine.config import Config


def check_load_from(cfg: Config) -> None:
    """Fetch a URL ``load_from`` into torch's hub cache now, or stop with a clear message."""
    src = cfg.get("load_from")
    if not src:
        return
    if not str(src).startswith(("http://", "https://")):
        if not osp.isfile(src):
            raise TrainError(f"load_from checkpoint not found: {src}. Train with --from-scratch to start without it.")
        return
    try:  # into torch's hub cache, hash-prefix checked (a cached copy too)
        download_checkpoint(src, progress=True)
    except BalloonDetError:
        raise  # a file that fails its hash prefix: deleted, with its own message
    except Exception as err:  # noqa: BLE001  (URLError, HTTPError, timeouts, ...)
        raise TrainError(
            f"cannot fetch the pretrained checkpoint load_from={src} ({err}).\n"
            f"Offline? Put the file at {hub_cache_path(src)}, point load_from at a local copy with "
            f"--cfg-options load_from=PATH, or train without pretrained weights with --from-scratch."
        ) from None


def train(config: str | Path, work_dir: str | Path | None = None, device: str = defaults.DEVICE,
          epochs: int | None = None, from_scratch: bool = False, resume: bool = False,
          cfg_options: dict | None = None, launcher: str = "none", data_root: str | Path | None = None,
          time_budget: float | None = None) -> Path:
    """Train; returns the work dir. Checkpoints, logs and curves' data end up there.

    ``config`` ``auto`` picks the recipe for this machine (``config.choose_recipe``).
    ``time_budget`` (seconds) ends the run after the first epoch that finishes past it.
    """
    device = pick_device(device)
    config = resolve_recipe(config, device)
    cfg = build_config(config, work_dir=work_dir, epochs=epochs, from_scratch=from_scratch, resume=resume,
                       cfg_options=cfg_options, launcher=launcher, device=device, data_root=data_root)
    if not resume:
        check_load_from(cfg)
    if time_budget:
        cfg.custom_hooks = [*cfg.get("custom_hooks", []), dict(type="TimeBudgetHook", seconds=time_budget)]

    from mmdet.utils import register_all_modules
    from mmengine.runner import Runner

    register_all_modules()
    from . import hooks  # noqa: F401  (registers TimeBudgetHook)

    allow_mmengine_checkpoints()  # --resume and load_from read checkpoints
    if launcher != "none" and device == "cpu":
        init_cpu_process_group(cfg)
    with runner_device(device), unformatted_config_text():
        runner = Runner.from_cfg(cfg)
        runner.register_hook(fit_check_hook(allow_head_mismatch=True))  # strict on --resume
        runner.train()
    return Path(cfg.work_dir)
