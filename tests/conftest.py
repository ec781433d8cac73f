"""Shared fixtures: the real archive when present, synthetic data, a loopback HTTP server."""
from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import threading
import zipfile
from collections import defaultdict
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REAL_ARCHIVE = REPO.parent / "shared" / "data" / "balloon_dataset.zip"  # the tests supply the shared copy


SMOKE = "rtmdet_tiny_smoke_synthetic"  # the config the tests train and load
SLOW_BECAUSE = ("train", "subprocess", "notebook")  # the markers that say why a test is slow


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects: `-m "not slow"` sees the umbrella marker
def pytest_collection_modifyitems(config, items):
    """A test that needs the session's trained model is marked ``train``; ``train``, ``subprocess`` and
    ``notebook`` tests are ``slow`` too (what ``make test-fast`` leaves out). Tests marked ``realdata``
    (select them with ``-m realdata``) skip without the real archive."""
    skip = pytest.mark.skip(reason=f"the real balloon archive is not at {REAL_ARCHIVE}; "
                                   "synthetic tests cover the same code")
    for item in items:
        if "trained_smoke" in item.fixturenames and "train" not in item.keywords:
            item.add_marker(pytest.mark.train)
        if any(mark in item.keywords for mark in SLOW_BECAUSE):
            item.add_marker(pytest.mark.slow)
        if "realdata" in item.keywords and not REAL_ARCHIVE.is_file():
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _no_local_archive_from_the_environment(monkeypatch):
    """Tests choose their archives themselves: a $BALLOONDET_LOCAL_ARCHIVE of the caller must not leak in."""
    from balloondet.core.defaults import LOCAL_ARCHIVE_ENV

    monkeypatch.delenv(LOCAL_ARCHIVE_ENV, raising=False)


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """A converted synthetic dataset (train/val + COCO json), made once per test session."""
    from balloondet.data.prepare import prepare_data

    return prepare_data(root=tmp_path_factory.mktemp("synthetic") / "balloon", synthetic=True, seed=0)


@pytest.fixture(scope="session")
def synthetic_zip(tmp_path_factory) -> Path:
    """A synthetic dataset packed like the official archive (balloon/train, balloon/val)."""
    from balloondet.data.synthetic import make_synthetic_dataset

    tmp = tmp_path_factory.mktemp("synthetic_zip")
    raw = make_synthetic_dataset(tmp / "balloon", n_train=6, n_val=3, seed=7)
    archive = tmp / "balloon_dataset.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(raw.rglob("*")):
            zf.write(path, path.relative_to(tmp).as_posix())
    return archive


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture
def http_server():
    """Serve a folder on 127.0.0.1; yields a function folder -> base URL."""
    servers = []

    def serve(folder: Path, handler=None) -> str:
        handler = handler or functools.partial(_QuietHandler, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def trained_smoke(tmp_path_factory, synthetic_root) -> dict:
    """The smoke config trained on synthetic data once per session (a few minutes on CPU).

    In the CPU's default precision: bf16 where bfloat16 is native, so that the learning test holds
    for bf16 training there, fp32 elsewhere (emulated bf16 is many times slower than fp32);
    ``tests/detect/test_train.py``'s resume test trains in fp32.
    """
    from balloondet.detect.train import train
    from balloondet.engine.config import build_config
    from balloondet.engine.detector import find_checkpoint

    work_dir = tmp_path_factory.mktemp("smoke_run")
    train(SMOKE, work_dir=work_dir, device="cpu", data_root=synthetic_root, precision="auto")
    epochs = build_config(SMOKE).train_cfg.max_epochs
    return {"work_dir": work_dir, "checkpoint": find_checkpoint(work_dir), "epochs": epochs, "config": SMOKE}


@pytest.fixture(scope="session")
def smoke_detector(trained_smoke):
    """The trained smoke model as a ``Detector`` (fp32 on the CPU), loaded once per session."""
    from balloondet.engine.detector import Detector

    return Detector.load(SMOKE, trained_smoke["checkpoint"], device="cpu", precision="fp32")


@pytest.fixture(scope="session")
def smoke_model():
    """The smoke config's model, untrained (a second to build)."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    from balloondet.engine.config import build_config

    register_all_modules()
    return MODELS.build(build_config(SMOKE).model)


@pytest.fixture(scope="session")
def coco_head_state_dict():
    """The same detector with COCO's 80 classes: only the classifier tensors differ."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    from balloondet.engine.config import build_config

    register_all_modules()
    cfg = build_config(SMOKE)
    cfg.model.bbox_head.num_classes = 80
    return MODELS.build(cfg.model).state_dict()


@pytest.fixture
def fitting_checkpoint(smoke_model, tmp_path):
    """A checkpoint of the untrained smoke model, with the dataset's classes: it fits the smoke config."""
    import torch

    path = tmp_path / "fits.pth"
    torch.save({"state_dict": smoke_model.state_dict(),
                "meta": {"dataset_meta": {"classes": ("balloon",), "palette": [(220, 20, 60)]}}}, path)
    return path


class RunsCode:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def save_malicious(path, marker, **kw):
    """A checkpoint whose unpickling would create ``marker`` (it must be refused before it runs)."""
    import torch

    torch.save({"state_dict": {}, "meta": {"x": RunsCode(marker)}}, path, **kw)
    return path


def named_by_hash(folder, data: bytes, digits=8, wrong=False):
    """``data`` as a file named like the model zoo's, with its SHA-256 prefix (or a wrong one) in the name."""
    digest = hashlib.sha256(data).hexdigest()[:digits]
    if wrong:
        digest = "0" * digits if digest != "0" * digits else "1" * digits
    path = folder / f"rtmdet_tiny_8xb32-300e_coco_20220902_112414-{digest}.pth"
    path.write_bytes(data)
    return path


def mmengine_like_checkpoint():
    """What an mmengine training checkpoint holds: tensors, optimizer state, HistoryBuffers,
    numpy scalars and arrays, sets and bytes."""
    import numpy as np
    import torch
    from mmengine.logging import MessageHub

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    opt = torch.optim.AdamW(model.parameters(), lr=0.01)
    model(torch.randn(1, 3, 8, 8)).sum().backward()
    opt.step()
    hub = MessageHub.get_instance("test_checkpoint")
    for i in range(3):
        hub.update_scalar("train/loss", np.float64(0.5 + i))
        hub.update_scalar("train/lr", 0.01)
    hub.update_info("epoch", 3)
    return {"meta": {"epoch": 3, "seed": np.int64(5), "arr": np.arange(4, dtype=np.float32), "set": {1, 2},
                     "bytes": b"xy", "dataset_meta": {"classes": ("balloon",), "palette": [(1, 2, 3)]}},
            "state_dict": model.state_dict(), "optimizer": opt.state_dict(), "message_hub": hub.state_dict(),
            "param_schedulers": [{"last_epoch": 3}]}


def check_coco(root, split, n_images, n_boxes):
    """The converted ``split`` of ``root`` has that many images and boxes, every box inside its image."""
    coco = json.loads((root / f"{split}.json").read_text())
    assert len(coco["images"]) == n_images
    assert len(coco["annotations"]) == n_boxes
    sizes = {img["id"]: (img["width"], img["height"]) for img in coco["images"]}
    for img in coco["images"]:
        assert (root / split / img["file_name"]).is_file()
    for ann in coco["annotations"]:
        x, y, w, h = ann["bbox"]
        width, height = sizes[ann["image_id"]]
        assert 0 <= x and 0 <= y and x + w <= width and y + h <= height, ann
        assert 0 < ann["area"] < w * h, ann  # a balloon's outline fills less than its box
    return coco


@pytest.fixture(scope="session")
def val_images(synthetic_root):
    """The synthetic val images that hold at least one balloon."""
    coco = json.loads((synthetic_root / "val.json").read_text())
    counts = defaultdict(int)
    for ann in coco["annotations"]:
        counts[ann["image_id"]] += 1
    return [synthetic_root / "val" / img["file_name"] for img in coco["images"] if counts[img["id"]] > 0]


@pytest.fixture(scope="session")
def initialised_model():
    """The smoke config's model with its own initialisation (seed 0) and plain BN: for precision and compat tests."""
    import torch
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.model import revert_sync_batchnorm

    from balloondet.engine.config import build_config

    register_all_modules()
    torch.manual_seed(0)
    model = revert_sync_batchnorm(MODELS.build(build_config(SMOKE).model))
    model.init_weights()
    return model
