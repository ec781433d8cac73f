"""The `train` step: mmengine's Runner on an mmdet config, with the few knobs people need."""
from __future__ import annotations

import os
import os.path as osp
from pathlib import Path

from .checkpoint import allow_mmengine_checkpoints
from .io import BalloonDataError

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO_ROOT / "configs"


class TrainError(RuntimeError):
    """A run that cannot start; the message says what to do."""


def resolve_config(config: str | Path) -> Path:
    """A config path, or a config name from ``configs/`` (with or without ``.py``)."""
    path = Path(config)
    for cand in (path, CONFIG_DIR / path, CONFIG_DIR / f"{path}.py"):
        if cand.is_file():
            return cand
    names = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.py")))
    raise BalloonDataError(f"config not found: {config} (configs/ has: {names})")


def pick_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise TrainError("--device cuda was asked for, but torch sees no CUDA device")
    if device not in ("cpu", "cuda"):
        raise TrainError(f"unknown device {device!r}: use auto, cpu or cuda")
    return device


def use_device(device: str = "auto") -> str:
    """``pick_device``, and hide CUDA from mmengine's Runner when the CPU was chosen."""
    device = pick_device(device)
    if device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the Runner places the model on CUDA whenever it sees one
    return device


def set_epochs(cfg, epochs: int) -> None:
    """Shorten or lengthen a schedule, moving every epoch-based milestone in proportion."""
    old = cfg.train_cfg.max_epochs
    scale = epochs / old

    def move(e):
        return max(1, min(epochs, round(e * scale)))

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


def set_from_scratch(cfg) -> None:
    """No pretrained weights at all: neither the COCO checkpoint nor the ImageNet backbone."""
    cfg.load_from = None
    if cfg.model.get("backbone", {}).get("init_cfg"):
        cfg.model.backbone.init_cfg = None


def check_load_from(cfg) -> None:
    """Fetch a URL ``load_from`` into torch's hub cache now, or stop with a clear message."""
    src = cfg.get("load_from")
    if not src:
        return
    if not str(src).startswith(("http://", "https://")):
        if not osp.isfile(src):
            raise TrainError(f"load_from checkpoint not found: {src}. Train with --from-scratch to start without it.")
        return
    import torch.hub

    cache = Path(torch.hub.get_dir()) / "checkpoints" / osp.basename(str(src).split("?")[0])
    if cache.is_file():
        return
    cache.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(src, str(cache), progress=True)  # writes a temp file, then renames
    except Exception as err:  # noqa: BLE001  (URLError, HTTPError, timeouts, ...)
        raise TrainError(
            f"cannot fetch the pretrained checkpoint load_from={src} ({err}).\n"
            f"Offline? Put the file at {cache}, point load_from at a local copy with "
            f"--cfg-options load_from=PATH, or train without pretrained weights with --from-scratch."
        ) from None


def set_data_root(cfg, data_root: str | Path) -> None:
    """Point every dataloader and evaluator of the config at another converted dataset."""
    root = str(data_root).rstrip("/") + "/"
    for name in ("train_dataloader", "val_dataloader", "test_dataloader"):
        dataset = cfg[name].dataset
        while "dataset" in dataset:  # wrappers such as MultiImageMixDataset or RepeatDataset
            dataset = dataset.dataset
        dataset.data_root = root
    for name in ("val_evaluator", "test_evaluator"):
        cfg[name].ann_file = root + Path(cfg[name].ann_file).name


def build_config(config, work_dir=None, epochs=None, from_scratch=False, resume=False,
                 cfg_options=None, launcher="none", device="auto", data_root=None):
    """The mmengine Config for a run, with this package's overrides applied."""
    from mmengine.config import Config

    path = resolve_config(config)
    cfg = Config.fromfile(str(path))
    if data_root:
        set_data_root(cfg, data_root)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    cfg.work_dir = str(work_dir or Path("work_dirs") / path.stem)
    if epochs:
        set_epochs(cfg, int(epochs))
    if from_scratch:
        set_from_scratch(cfg)
    cfg.resume = bool(resume)
    cfg.launcher = launcher
    if launcher != "none" and pick_device(device) == "cpu":
        cfg.env_cfg.setdefault("dist_cfg", {})["backend"] = "gloo"  # NCCL needs GPUs
        replace_norm(cfg.model, "SyncBN", "BN")  # SyncBN only runs on CUDA tensors
        if "use_syncbn" in cfg.model or cfg.model.type == "RTMDet":
            cfg.model.use_syncbn = False  # RTMDet converts every BN to SyncBN when world size > 1
        # mmengine passes device_ids=[LOCAL_RANK] to DDP, which only GPU modules accept
        cfg.model_wrapper_cfg = dict(type="MMDistributedDataParallel", device_ids=None, broadcast_buffers=False)
    return cfg


def init_cpu_process_group(cfg) -> None:
    """Join torchrun's process group over gloo ourselves.

    mmengine 0.10.7's pytorch launcher calls ``torch.cuda.set_device`` unconditionally; the
    Runner skips its own initialisation when a process group already exists.
    """
    import torch.distributed as dist

    if cfg.launcher == "pytorch" and not dist.is_initialized():
        dist.init_process_group(backend="gloo")


def replace_norm(node, old: str, new: str) -> None:
    """Swap a norm layer type everywhere in a model config (in place)."""
    if isinstance(node, dict):
        if node.get("type") == old and "norm_cfg" not in node:
            node["type"] = new
        for value in node.values():
            replace_norm(value, old, new)
    elif isinstance(node, (list, tuple)):
        for value in node:
            replace_norm(value, old, new)


def train(config, work_dir=None, device="auto", epochs=None, from_scratch=False, resume=False,
          cfg_options=None, launcher="none", data_root=None):
    """Train; returns the work dir. Checkpoints, logs and curves' data end up there."""
    device = use_device(device)
    cfg = build_config(config, work_dir, epochs, from_scratch, resume, cfg_options, launcher, device, data_root)
    if not resume:
        check_load_from(cfg)

    from mmdet.utils import register_all_modules
    from mmengine.runner import Runner

    register_all_modules()
    allow_mmengine_checkpoints()  # --resume and load_from read checkpoints
    if launcher != "none" and device == "cpu":
        init_cpu_process_group(cfg)
    runner = Runner.from_cfg(cfg)
    runner.train()
    return Path(cfg.work_dir)
