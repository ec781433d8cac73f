"""Checkpoint downloads, verified against the hash prefix in their names."""
from __future__ import annotations

import io
import shutil

import pytest
import torch
from conftest import named_by_hash

from balloondet.core.errors import CheckpointHashError
from balloondet.engine.checkpoint import allow_mmengine_checkpoints
from balloondet.engine.download import download_checkpoint, hash_prefix, verify_hash_prefix


def test_hash_prefix_follows_torch_hub():
    assert hash_prefix("rtmdet_tiny_8xb32-300e_coco_20220902_112414-78e30dcc.pth") == "78e30dcc"
    assert hash_prefix("https://x.org/a/resnet18-5c106cde.pth?x=1") == "5c106cde"
    for name in ("epoch_30.pth", "model-face.pth", "cspnext-tiny_imagenet_600e.pth"):
        assert hash_prefix(name) is None


def test_verify_hash_prefix(tmp_path):
    good = named_by_hash(tmp_path, b"weights")
    assert verify_hash_prefix(good) is True and good.exists()
    assert verify_hash_prefix(named_by_hash(tmp_path, b"weights", digits=12)) is True
    plain = tmp_path / "epoch_1.pth"
    plain.write_bytes(b"x")
    assert verify_hash_prefix(plain) is False
    bad = named_by_hash(tmp_path, b"tampered", wrong=True)
    with pytest.raises(CheckpointHashError, match="does not match|but the file name says") as err:
        verify_hash_prefix(bad, source="https://x.org/bad.pth")
    assert str(bad) in str(err.value) and "deleted" in str(err.value)
    assert not bad.exists()


def test_download_verifies_fresh_and_cached_copies(tmp_path, monkeypatch, http_server):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    served = tmp_path / "served"
    served.mkdir()
    buf = io.BytesIO()
    torch.save({"state_dict": {"w": torch.ones(2)}}, buf)
    good = named_by_hash(served, buf.getvalue())
    bad = named_by_hash(served, buf.getvalue() + b"!", wrong=True)
    base = http_server(served)
    cache = tmp_path / "torch" / "hub" / "checkpoints"

    assert download_checkpoint(f"{base}/{good.name}") == cache / good.name
    with pytest.raises(CheckpointHashError):
        download_checkpoint(f"{base}/{bad.name}")
    assert not (cache / bad.name).exists()

    shutil.copy(good, cache / bad.name)  # a damaged copy already in the cache: refused before use
    with pytest.raises(CheckpointHashError):
        download_checkpoint(f"{base}/{bad.name}")
    assert not (cache / bad.name).exists()

    from mmengine.runner.checkpoint import _load_checkpoint  # load_from URLs take the same road

    allow_mmengine_checkpoints()
    assert torch.equal(_load_checkpoint(f"{base}/{good.name}")["state_dict"]["w"], torch.ones(2))
    with pytest.raises(CheckpointHashError):
        _load_checkpoint(f"{base}/{bad.name}")
