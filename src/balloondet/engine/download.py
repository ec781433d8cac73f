"""Checkpoint downloads, verified: a file whose name carries the first hex digits of its SHA-256
(``..._20220902_112414-78e30dcc.pth``, torch.hub's convention) is checked, and a download that fails
the check is deleted. Downloads show their size and ETA and leave no partial file in the cache."""
from __future__ import annotations

import hashlib
import os.path as osp
import re
import sys
from pathlib import Path

from balloondet.core.errors import CheckpointHashError
from balloondet.core.files import download

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


def verify_hash_prefix(path: str | Path, source: str | None = None, delete: bool = True) -> bool:
    """Check ``path`` against the hash prefix in its name; raise :class:`CheckpointHashError` on a mismatch.

    Returns True when the name carries a prefix and the file matches it, False when the name
    carries none (nothing to check). ``delete``: remove a mismatching file (for downloaded copies
    only; a file the user gave is left where it is).
    """
    prefix = hash_prefix(path)
    if prefix is None:
        return False
    digest = sha256(path)
    if not digest.startswith(prefix):
        origin = f" (from {source})" if source else ""
        said = f"SHA-256 starts with {digest[:len(prefix)]}, but the file name says {prefix}"
        if delete:
            Path(path).unlink(missing_ok=True)
            raise CheckpointHashError(
                f"{path}{origin}: {said}: the download is damaged or not the published file, so it was deleted. "
                f"Download it again; if this repeats, do not use that source.")
        raise CheckpointHashError(f"{path}{origin}: {said}: the file is damaged or not the published one; "
                                  f"download it again from a source you trust")
    return True


def hub_cache_path(url: str) -> Path:
    """Where torch.hub (and mmengine) keep a downloaded checkpoint: ``<hub dir>/checkpoints/<name>``."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints" / osp.basename(url.split("?")[0])


def download_checkpoint(url: str, progress: bool | None = None) -> Path:
    """The verified local copy of a checkpoint URL in torch's hub cache, downloading it if needed.

    A cached copy is verified before use, a fresh download right after it; a file failing its
    hash prefix is deleted (:class:`CheckpointHashError`). The download shows a progress bar
    (``progress``; default: when stderr is a terminal) and appears in the cache only once complete:
    an interrupted or short one raises (``DownloadError``) and leaves nothing there.
    """
    cache = hub_cache_path(url)
    if not cache.is_file():
        progress = sys.stderr.isatty() if progress is None else progress
        download(url, cache, progress=progress)
    verify_hash_prefix(cache, source=url)
    return cache
