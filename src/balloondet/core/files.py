"""Files: paths as printed output shows them, writes that appear only once complete (downloads too), JSON in and out."""
from __future__ import annotations

import contextlib
import http.client
import json
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

from balloondet.core import defaults
from balloondet.core.errors import DataError, DownloadError


def display_path(path: str | Path) -> str:
    """``path`` as printed output shows it: relative to the working directory when under it, else to
    the source checkout when under that, else as given (no machine-specific prefix in notebooks)."""
    path = Path(path)
    try:
        resolved = path.resolve()
    except OSError:  # e.g. a dangling symlink loop: show what we were given
        return str(path)
    for base in (Path.cwd(), defaults.SOURCE_ROOT):
        try:
            return str(resolved.relative_to(base.resolve())) or "."
        except ValueError:
            continue
    return str(path)


@contextlib.contextmanager
def atomic_path(final: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``final``; rename it onto ``final`` only on success."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    # the real extension goes last, for writers that pick the format from it
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part" + suffix, dir=final.parent)
    os.close(fd)
    tmp = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def download(url: str, dest: str | Path, timeout: float = 30.0, progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` with a progress bar (size, speed, ETA); ``dest`` appears only when complete.

    A refused, failed, short or interrupted transfer (Ctrl-C included) raises, ``DownloadError`` naming the
    URL for all but the interrupt, and leaves nothing behind: the bytes go to a temporary file beside ``dest``.
    """
    from tqdm.auto import tqdm

    dest = Path(dest)
    with atomic_path(dest) as tmp:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                total = int(resp.headers.get("Content-Length") or 0) or None
                with open(tmp, "wb") as f, tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                                                desc=f"download {PurePosixPath(url.split('?')[0]).name}",
                                                disable=not progress) as bar:
                    while chunk := resp.read(1 << 20):
                        f.write(chunk)
                        bar.update(len(chunk))
        except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
            # e.g. HTTPError 404, connection refused, IncompleteRead when the server hangs up early
            raise DownloadError(f"{url}: download failed ({getattr(err, 'reason', None) or err!r})") from None
        if total is not None and tmp.stat().st_size != total:
            raise DownloadError(f"{url}: download incomplete ({tmp.stat().st_size} of {total} bytes)")
    return dest


def write_json_atomic(obj: Any, path: str | Path) -> Path:
    """``obj`` as indented JSON at ``path``, which appears only once complete."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1) + "\n", encoding="utf-8")
    return Path(path)


def load_json(path: str | Path, what: str) -> Any:
    """A JSON file, or a ``DataError`` that names the file and what it should have been."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err}); expected {what}") from None
