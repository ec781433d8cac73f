"""Shared fixtures: the real archive when present, synthetic data, a loopback HTTP server."""
from __future__ import annotations

import functools
import http.server
import threading
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REAL_ARCHIVE = REPO.parent / "shared" / "data" / "balloon_dataset.zip"  # the tests supply the shared copy


def pytest_collection_modifyitems(config, items):
    """Tests marked ``realdata`` (select them with ``-m realdata``) skip without the real archive."""
    if REAL_ARCHIVE.is_file():
        return
    skip = pytest.mark.skip(reason=f"the real balloon archive is not at {REAL_ARCHIVE}; "
                                   "synthetic tests cover the same code")
    for item in items:
        if "realdata" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _no_local_archive_from_the_environment(monkeypatch):
    """Tests choose their archives themselves: a $BALLOONDET_LOCAL_ARCHIVE of the caller must not leak in."""
    from balloondet.defaults import LOCAL_ARCHIVE_ENV

    monkeypatch.delenv(LOCAL_ARCHIVE_ENV, raising=False)


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """A converted synthetic dataset (train/val + COCO json), made once per test session."""
    from balloondet.data import prepare_data

    return prepare_data(root=tmp_path_factory.mktemp("synthetic") / "balloon", synthetic=True, seed=0)


@pytest.fixture(scope="session")
def synthetic_zip(tmp_path_factory) -> Path:
    """A synthetic dataset packed like the official archive (balloon/train, balloon/val)."""
    from balloondet.synthetic import make_synthetic_dataset

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
    ``tests/test_train.py``'s resume test trains in fp32.
    """
    from balloondet.config import build_config
    from balloondet.model import find_checkpoint
    from balloondet.train import train

    work_dir = tmp_path_factory.mktemp("smoke_run")
    train("rtmdet_tiny_smoke_synthetic", work_dir=work_dir, device="cpu", data_root=synthetic_root, precision="auto")
    epochs = build_config("rtmdet_tiny_smoke_synthetic").train_cfg.max_epochs
    return {"work_dir": work_dir, "checkpoint": find_checkpoint(work_dir), "epochs": epochs,
            "config": "rtmdet_tiny_smoke_synthetic"}
