"""The cores this process may use, and the DataLoader workers and torch threads that fit them.

Measured on the CPU recipe (``bench/train_loop.py``, 2-core AVX2 EPYC, fp32, image cache on): two
DataLoader workers beat one and none (1.36 / 1.54 / 1.55 s per iteration), and two intra-op threads in
the main process beat one by 35-60 % whatever the workers. A worker runs one torch thread (PyTorch sets
it), decodes nothing after the first epoch (``image_cache``) and mostly waits, so it shares the cores
with the step instead of taking one away from it. Hence: threads = cores, train workers = cores up to
``MAX_TRAIN_WORKERS``, val/test workers up to ``MAX_EVAL_WORKERS``, and no worker on a single core,
where a worker would only take turns with the step.

``usable_cores`` counts what this process may run on (its CPU affinity and a container's CPU quota),
not the machine's cores: ``os.cpu_count()`` says 64 inside a 2-CPU container.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

from balloondet.core import defaults

if TYPE_CHECKING:
    from mmengine.config import Config

MAX_TRAIN_WORKERS = 8  # what RTMDet-tiny's pipeline needs to feed a GPU (the GPU recipe's measured runs)
MAX_EVAL_WORKERS = 4  # val/test: 13 images at a time, decoded once
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2: "QUOTA PERIOD" or "max PERIOD"
DATALOADERS = ("train_dataloader", "val_dataloader", "test_dataloader")


def cgroup_cpu_limit(path: Path = CGROUP_CPU_MAX) -> int | None:
    """The CPUs a container's quota allows (rounded up), or None without a quota (or a readable file)."""
    try:
        quota, period = path.read_text().split()[:2]
        return None if quota == "max" else max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        return None


def usable_cores(cgroup_file: Path = CGROUP_CPU_MAX) -> int:
    """The cores this process may use: its CPU affinity, capped by a container's CPU quota."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    limit = cgroup_cpu_limit(cgroup_file)
    return max(1, min(cores, limit) if limit else cores)


def loader_workers(cores: int, split: str = "train") -> int:
    """DataLoader workers for ``split`` (``train``, ``val``, ``test``) on ``cores`` cores (module docstring)."""
    if cores < 2:
        return 0
    return min(cores, MAX_TRAIN_WORKERS if split == "train" else MAX_EVAL_WORKERS)


def set_workers(cfg: Config, cores: int | None = None) -> dict[str, int]:
    """Every dataloader whose ``num_workers`` is ``auto`` gets ``loader_workers`` for ``cores``
    (default: ``usable_cores()``); persistent workers only where there are workers. A number in the
    config (or in ``--cfg-options``) stands. Returns the workers set, by dataloader."""
    cores = usable_cores() if cores is None else cores
    chosen = {}
    for name in DATALOADERS:
        loader = cfg.get(name)
        if loader is None or loader.get("num_workers") != defaults.AUTO:
            continue
        loader.num_workers = chosen[name] = loader_workers(cores, name.split("_")[0])
        loader.persistent_workers = loader.num_workers > 0 and loader.get("persistent_workers", True)
    return chosen


def set_threads(cores: int | None = None) -> int:
    """torch's intra-op threads in this process = ``cores`` (default: ``usable_cores()``); returns it.

    torch's own default counts the machine's physical cores, which inside a container can be many more
    than the process may use: threads then wait on each other.
    """
    import torch

    cores = usable_cores() if cores is None else cores
    if torch.get_num_threads() != cores:
        torch.set_num_threads(cores)
    return cores


def cores_line(cfg: Config, cores: int | None = None) -> str:
    """One line for the log: the cores, torch's threads and each dataloader's workers."""
    cores = usable_cores() if cores is None else cores
    import torch

    workers = ", ".join(f"{name.split('_')[0]} {cfg[name].get('num_workers', 0)}" for name in DATALOADERS
                        if cfg.get(name) is not None)
    return f"cores: {cores} usable, {torch.get_num_threads()} torch threads; dataloader workers: {workers}"
