import os

import pytest
import torch

from balloondet.engine import cores
from balloondet.engine.config import build_config
from balloondet.engine.cores import (
    MAX_EVAL_WORKERS,
    MAX_TRAIN_WORKERS,
    cgroup_cpu_limit,
    loader_workers,
    set_threads,
    set_workers,
    usable_cores,
)


@pytest.mark.parametrize(("cores_", "train", "val"), [(1, 0, 0), (2, 2, 2), (4, 4, 4), (16, 8, 4), (64, 8, 4)])
def test_workers_follow_the_core_count(cores_, train, val):
    assert loader_workers(cores_, "train") == train
    assert loader_workers(cores_, "val") == loader_workers(cores_, "test") == val


def test_cgroup_quota_is_read_and_rounded_up(tmp_path):
    limit = tmp_path / "cpu.max"
    limit.write_text("150000 100000\n")
    assert cgroup_cpu_limit(limit) == 2
    limit.write_text("max 100000\n")
    assert cgroup_cpu_limit(limit) is None
    assert cgroup_cpu_limit(tmp_path / "absent") is None
    limit.write_text("garbage\n")
    assert cgroup_cpu_limit(limit) is None


def test_usable_cores_is_the_affinity_capped_by_the_quota(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    limit = tmp_path / "cpu.max"
    limit.write_text("max 100000\n")
    assert usable_cores(limit) == 16
    limit.write_text("300000 100000\n")  # a container with --cpus 3 on a 16-core host
    assert usable_cores(limit) == 3
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert usable_cores(limit) == 1


@pytest.mark.parametrize("cores_", [1, 2, 16])
def test_the_recipes_workers_come_from_the_core_count(cores_, monkeypatch):
    monkeypatch.setattr(cores, "usable_cores", lambda *a: cores_)
    for name in ("rtmdet_tiny_cpu-scratch_balloon", "rtmdet_tiny_gpu-scratch_balloon", "rtmdet_tiny_1xb12-40e_balloon"):
        cfg = build_config(name)
        assert cfg.train_dataloader.num_workers == min(cores_, MAX_TRAIN_WORKERS) * (cores_ > 1)
        assert cfg.val_dataloader.num_workers == cfg.test_dataloader.num_workers == \
            min(cores_, MAX_EVAL_WORKERS) * (cores_ > 1)
        # torch's DataLoader refuses persistent workers without workers
        assert cfg.train_dataloader.persistent_workers == (cores_ > 1)


def test_a_number_in_the_config_or_the_options_stands(monkeypatch):
    monkeypatch.setattr(cores, "usable_cores", lambda *a: 16)
    assert build_config("rtmdet_tiny_smoke_synthetic").train_dataloader.num_workers == 0
    cfg = build_config("rtmdet_tiny_cpu-scratch_balloon", cfg_options={"train_dataloader.num_workers": 1})
    assert cfg.train_dataloader.num_workers == 1
    assert cfg.val_dataloader.num_workers == MAX_EVAL_WORKERS
    assert set_workers(cfg, 2) == {}  # nothing left on auto


def test_threads_are_the_usable_cores():
    before = torch.get_num_threads()
    try:
        assert set_threads(1) == 1 and torch.get_num_threads() == 1
        assert set_threads() == usable_cores() == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
