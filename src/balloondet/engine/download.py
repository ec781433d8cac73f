"""Checkpoint downloads, verified: a file whose name carries the first hex digits of its SHA-256
(``..._20220902_112414-78e30dcc.pth``, torch.hub's convention) is checked, and deleted on a mismatch."""
from __future__ import annotations

import hashlib
import os
import os.path as osp
import re
from pathlib import Path

from balloondet.core.errors import CheckpointHashError

HASH_REGEX = re.compile(r"-([a-f0-9]*)\.")  # torch.hub's: the hash prefix sits between '-' and '.'
MIN_HASH_DIGITS = 8


def hash_prefix(name: str | Path) -> str | None:
    """The SHA-256 prefix in a file name (``...-78e30dcc.pth`` -> ``78e30dcc``), if it has one.

    torch.hub's regex (``-([a-f0-9]*)\\.``), counted only with at least 8 hex digits, so that
    names like ``model-face.pth`` do not count; the last such match wins.
    """
    found = [m.group(1) for m in HASH_REGEX.finditer(Path(str(name).split("?")[0]).name)]
    found = [h for h in found if len(h) >= MIN_HASH_DIGITS]
    return found[-1] if found else None


def sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_hash_prefix(path: str | Path, source: str | None = None) -> bool:
    """Check ``path`` against the hash prefix in its name; delete it and raise on a mismatch.

    Returns True when the name carries a prefix and the file matches it, False when the name
    carries none (nothing to check). Only call this on downloaded copies: it deletes the file.
    """
    prefix = hash_prefix(path)
    if prefix is None:
        return False
    digest = sha256(path)
    if not digest.startswith(prefix):
        Path(path).unlink(missing_ok=True)
        origin = f" (from {source})" if source else ""
        raise CheckpointHashError(
            f"{path}{origin}: SHA-256 starts with {digest[:len(prefix)]}, but the file name says {prefix}: "
            f"the download is damaged or not the published file, so it was deleted. Download it again; "
            f"if this repeats, do not use that source.")
    return True


def hub_cache_path(url: str) -> Path:
    """Where torch.hub (and mmengine) keep a downloaded checkpoint: ``<hub dir>/checkpoints/<name>``."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints" / osp.basename(url.split("?")[0])


def download_checkpoint(url: str, progress: bool | None = None) -> Path:
    """The verified local copy of a checkpoint URL in torch's hub cache, downloading it if needed.

    A cached copy is verified before use, a fresh download right after it; a file failing its
    hash prefix is deleted (:class:`CheckpointHashError`).
    """
    import torch.hub

    cache = hub_cache_path(url)
    if not cache.is_file():
        cache.parent.mkdir(parents=True, exist_ok=True)
        progress = os.isatty(2) if progress is None else progress
        torch.hub.download_url_to_file(url, str(cache), progress=progress)  # temp file, then renamed
    verify_hash_prefix(cache, source=url)
    return cache


