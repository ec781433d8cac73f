"""Configs and devices, shared by every step that builds or runs a model.

- ``resolve_config``: a config path, or a name looked up in ``$BALLOONDET_CONFIGS``,
  ``./configs`` and the source checkout's ``configs/``.
- ``build_config``: the mmengine ``Config`` of a run, with this package's overrides
  (``set_data_root``, ``set_classes_from_data``, ``cores.set_workers``, ``set_epochs``, ``set_from_scratch``,
  the torchrun-on-CPU tweaks).
- ``pick_device``: choose the device (``compat.runner_device`` makes mmengine's Runner use it).
- ``choose_recipe``/``resolve_recipe``: the config that ``auto`` stands for on this machine.
- ``read_saved_config``/``saved_config_files``: the config a run saved into its work dir.
"""
from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from balloondet.core import defaults
from balloondet.core.errors import ConfigError
from balloondet.engine.cores import set_workers

if TYPE_CHECKING:
    from mmengine.config import Config


_RUN_IDS = itertools.count(1)


# --- finding a config -----------------------------------------------------------------
def config_dirs() -> list[Path]:
    """Folders searched for a config name, in order, without duplicates."""
    candidates = [Path(os.environ[defaults.CONFIGS_ENV])] if os.environ.get(defaults.CONFIGS_ENV) else []
    candidates += [Path("configs"), defaults.SOURCE_ROOT / "configs"]
    dirs: list[Path] = []
    for folder in candidates:
        if folder.is_dir() and all(folder.resolve() != d.resolve() for d in dirs):
            dirs.append(folder)
    return dirs


def resolve_config(config: str | Path) -> Path:
    """A config path, or a config name (with or without ``.py``) from ``config_dirs()``."""
    path = Path(config)
    if path.is_file():
        return path
    dirs = config_dirs()
    for folder in dirs:
        for cand in (folder / path, folder / f"{path}.py"):
            if cand.is_file():
                return cand
    names = ", ".join(sorted({p.stem for d in dirs for p in d.glob("*.py")})) or "none"
    searched = ", ".join(str(d) for d in dirs) or "no configs folder"
    raise ConfigError(f"config not found: {config} (searched {searched}; names: {names}). "
                      f"Pass a path, or set {defaults.CONFIGS_ENV} to a folder of configs.")


def default_work_dir(config: str | Path, data_root: str | Path | None = None) -> Path:
    """Where a run goes unless told otherwise: ``work_dirs/<config name>``, or for a data set other than the
    default one ``work_dirs/<data set folder>/<config name>``, so that a finished balloon run is never taken
    for a run on your data (a finished run in the work dir is reused)."""
    name = Path(config).name
    name = name[:-3] if name.endswith(".py") else name
    if data_root is not None and Path(data_root).resolve() != Path(defaults.DATA_ROOT).resolve():
        return Path(defaults.WORK_DIRS) / Path(data_root).resolve().name / name
    return Path(defaults.WORK_DIRS) / name


# --- devices --------------------------------------------------------------------------
def pick_device(device: str = defaults.DEVICE) -> str:
    """``cpu`` or ``cuda``: ``auto`` takes CUDA when torch sees it."""
    if device not in defaults.DEVICES:
        raise ConfigError(f"unknown device {device!r}: use {', '.join(defaults.DEVICES)}")
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for, but torch sees no CUDA device")
    return device


# --- overrides ------------------------------------------------------------------------
def set_epochs(cfg: Config, epochs: int) -> None:
    """Shorten or lengthen a schedule, moving every epoch-based milestone in proportion."""
    old = cfg.train_cfg.max_epochs
    scale = epochs / old

    def move(epoch: int) -> int:
        return max(1, min(epochs, round(epoch * scale)))

    cfg.train_cfg.max_epochs = epochs
    cfg.train_cfg.val_interval = min(cfg.train_cfg.get("val_interval", 1), epochs)
    if cfg.train_cfg.get("dynamic_intervals"):
        cfg.train_cfg.dynamic_intervals = [(move(e), i) for e, i in cfg.train_cfg.dynamic_intervals]
    for sched in cfg.get("param_scheduler") or []:
        if sched.get("by_epoch", True):
            for key in ("begin", "end", "T_max"):
                if sched.get(key):  # a begin of 0 stays 0
                    sched[key] = move(sched[key])
            if "end" in sched and sched["end"] <= sched.get("begin", 0):  # very short runs
                sched["begin"] = sched["end"] - 1
    for hook in cfg.get("custom_hooks") or []:
        if "switch_epoch" in hook:
            hook["switch_epoch"] = move(hook["switch_epoch"])
    ckpt = cfg.default_hooks.get("checkpoint")
    if ckpt and ckpt.get("by_epoch", True):
        ckpt["interval"] = min(ckpt.get("interval", 1), epochs)


def set_from_scratch(cfg: Config) -> None:
    """No pretrained weights at all: neither the COCO checkpoint nor the ImageNet backbone; a backbone the
    recipe freezes for fine-tuning is trained (frozen random weights would learn nothing)."""
    cfg.load_from = None
    if cfg.model.get("backbone", {}).get("init_cfg"):
        cfg.model.backbone.init_cfg = None
    if cfg.model.get("backbone", {}).get("frozen_stages", -1) != -1:
        cfg.model.backbone.frozen_stages = -1


def set_data_root(cfg: Config, data_root: str | Path) -> None:
    """Point every dataloader and evaluator of the config at another converted dataset."""
    root = str(data_root).rstrip("/") + "/"
    for name in ("train_dataloader", "val_dataloader", "test_dataloader"):
        innermost_dataset(cfg[name].dataset).data_root = root
    for name in ("val_evaluator", "test_evaluator"):
        cfg[name].ann_file = root + Path(cfg[name].ann_file).name


def set_classes_from_data(cfg: Config) -> tuple[str, ...] | None:
    """The class names, their order and their number, from the converted data set the config trains on
    (``core.classes``: its categories), into every dataloader's metainfo, the head's ``num_classes`` and the
    evaluators (per-class AP where there is more than one class). Nothing changes while the data set is not
    converted yet (the config's own list stands); returns the classes applied, or None."""
    from balloondet.core.classes import read_classes

    root = innermost_dataset(cfg.train_dataloader.dataset).get("data_root")
    classes = read_classes(root) if root else None
    if classes is not None:
        set_classes(cfg, classes)
    return classes


def set_classes(cfg: Config, classes: tuple[str, ...]) -> None:
    """``classes`` (names in label order) into every dataloader's metainfo, the head and the evaluators."""
    from balloondet.core.classes import palette

    metainfo = dict(classes=tuple(classes), palette=palette(len(classes)))
    for name in ("train_dataloader", "val_dataloader", "test_dataloader"):
        innermost_dataset(cfg[name].dataset).metainfo = metainfo
    cfg.model.bbox_head.num_classes = len(classes)
    for name in ("val_evaluator", "test_evaluator"):
        if name in cfg:
            cfg[name].classwise = len(classes) > 1  # CocoMetric's per-class AP table


def innermost_dataset(dataset: Any) -> Any:
    """The dataset config inside any wrappers (``MultiImageMixDataset``, ``RepeatDataset``, ...)."""
    while "dataset" in dataset:
        dataset = dataset.dataset
    return dataset


def replace_norm(node: Any, old: str, new: str) -> None:
    """Swap a norm layer type everywhere in a model config (in place)."""
    if isinstance(node, dict):
        if node.get("type") == old and "norm_cfg" not in node:
            node["type"] = new
        for value in node.values():
            replace_norm(value, old, new)
    elif isinstance(node, (list, tuple)):
        for value in node:
            replace_norm(value, old, new)


def set_distributed_cpu(cfg: Config) -> None:
    """What torchrun on CPU processes needs: gloo, plain BN, DDP without device ids."""
    cfg.env_cfg.setdefault("dist_cfg", {})["backend"] = "gloo"  # NCCL needs GPUs
    replace_norm(cfg.model, "SyncBN", "BN")  # SyncBN only runs on CUDA tensors
    if "use_syncbn" in cfg.model or cfg.model.type == "RTMDet":
        cfg.model.use_syncbn = False  # RTMDet converts every BN to SyncBN when world size > 1
    # mmengine passes device_ids=[LOCAL_RANK] to DDP, which only GPU modules accept
    cfg.model_wrapper_cfg = dict(type="MMDistributedDataParallel", device_ids=None, broadcast_buffers=False)


def init_cpu_process_group(cfg: Config) -> None:
    """Join torchrun's process group over gloo ourselves.

    mmengine 0.10.7's pytorch launcher calls ``torch.cuda.set_device`` unconditionally; the
    Runner skips its own initialisation when a process group already exists.
    """
    import torch.distributed as dist

    if cfg.launcher == "pytorch" and not dist.is_initialized():
        dist.init_process_group(backend="gloo")


def build_config(config: str | Path, *, work_dir: str | Path | None = None, epochs: int | None = None,
                 from_scratch: bool = False, resume: bool = False, cfg_options: dict | None = None,
                 launcher: str = "none", device: str = defaults.DEVICE,
                 data_root: str | Path | None = None, precision: str = "fp32") -> Config:
    """The mmengine Config for a run, with this package's overrides applied.

    ``precision`` is ``fp32`` or ``bf16`` (as ``precision.resolve_precision`` answers).
    """
    from mmengine.config import Config

    from balloondet.engine.precision import set_precision

    path = resolve_config(config)
    cfg = Config.fromfile(str(path))
    if data_root:
        set_data_root(cfg, data_root)
    set_classes_from_data(cfg)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    set_workers(cfg)  # a config's num_workers='auto': from the cores this process may use
    cfg.work_dir = str(work_dir or default_work_dir(path, data_root))
    if epochs:
        set_epochs(cfg, int(epochs))
    if from_scratch:
        set_from_scratch(cfg)
    cfg.resume = bool(resume)
    cfg.launcher = launcher
    if cfg.get("visualizer"):
        # mmengine hands out an existing visualizer by name, and with it the first run's log folder:
        # a second run in the same process would append its scalars to the first run's
        cfg.visualizer.name = f"{cfg.visualizer.get('name', 'visualizer')}-{next(_RUN_IDS)}"
    if launcher != "none" and pick_device(device) == "cpu":
        set_distributed_cpu(cfg)
    set_precision(cfg, precision)
    return cfg


# --- a run's saved config ------------------------------------------------------------
def saved_config_files(work_dir: str | Path) -> list[Path]:
    """The configs mmengine saved into a work dir when the run started (``WORK_DIR/*.py``), by name."""
    return sorted(Path(work_dir).glob("*.py"))


def read_saved_config(work_dir: str | Path) -> Config | None:
    """The first of ``saved_config_files`` that mmengine can read; None when there is none."""
    from mmengine.config import Config

    for path in saved_config_files(work_dir):
        try:
            return Config.fromfile(str(path))
        except Exception:  # noqa: BLE001  (not a config mmengine can read: try the next)
            continue
    return None


# --- choosing a recipe ----------------------------------------------------------------
def coco_checkpoint_at_hand(url: str | None, timeout: float = 10.0) -> tuple[bool, str]:
    """(True, why) when a pretrained checkpoint is cached or its server answers; downloads nothing."""
    from balloondet.engine.download import hub_cache_path

    if not url:
        return False, "the recipe names no checkpoint"
    if not str(url).startswith(("http://", "https://")):
        return Path(url).is_file(), f"local file {url}"
    if hub_cache_path(url).is_file():
        return True, f"cached in {hub_cache_path(url).parent}"
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
            return True, "its server answers"
    except (urllib.error.URLError, OSError) as err:
        return False, f"neither cached nor reachable: {getattr(err, 'reason', err)}"


def choose_recipe(device: str = defaults.DEVICE,
                  probe: Callable[[str | None], tuple[bool, str]] | None = None,
                  load_from: str | Path | None = None, from_scratch: bool = False) -> tuple[str, str]:
    """The config that ``auto`` stands for on this machine, and why (one line).

    Fine-tune from COCO wherever its checkpoint is at hand (``load_from`` given, or the recipe's own
    checkpoint cached or its server answering): the CPU fine-tune without CUDA, the GPU one with it.
    From scratch only when no checkpoint can be had: the CPU recipe (224 then 320 px) or the GPU one (640 px).
    ``probe(url) -> (at hand, why)`` looks for the checkpoint (default: ``coco_checkpoint_at_hand``);
    ``from_scratch`` asks for the from-scratch recipe whatever is at hand.
    """
    cuda = pick_device(device) == "cuda"
    finetune, scratch = (defaults.GPU_CONFIG, defaults.GPU_SCRATCH_CONFIG) if cuda else \
        (defaults.CPU_FINETUNE_CONFIG, defaults.CPU_CONFIG)
    where = "CUDA" if cuda else "no CUDA device"
    how = "fine-tune it" if cuda else "fine-tune it on the CPU (frozen backbone, 40 epochs at 320 px)"
    size = "640 px" if cuda else "300 epochs at 224 px, the last 30 at 320"
    if from_scratch:
        return scratch, f"{where}, and from scratch was asked for: the from-scratch recipe ({size})"
    if load_from:
        return finetune, f"{where}, and a checkpoint was given ({load_from}): {how}"
    ok, why = (probe or coco_checkpoint_at_hand)(build_config(finetune).get("load_from"))
    if ok:
        return finetune, f"{where}, and the COCO checkpoint is at hand ({why}): {how}"
    return scratch, f"{where}, and no COCO checkpoint ({why}): from scratch ({size})"


def resolve_recipe(config: str | Path, device: str = defaults.DEVICE,
                   load_from: str | Path | None = None, from_scratch: bool = False) -> str | Path:
    """``config`` itself, or for ``auto`` the recipe ``choose_recipe`` picks (printed with the reason)."""
    if str(config) != defaults.AUTO:
        return config
    chosen, why = choose_recipe(device, load_from=load_from, from_scratch=from_scratch)
    print(f"recipe: {chosen} ({why})")
    return chosen
