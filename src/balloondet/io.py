"""Small file helpers shared by the steps: clear errors and atomic writes."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator

EXIF_ORIENTATION = 0x0112
TRANSPOSED_ORIENTATIONS = {5, 6, 7, 8}  # EXIF orientations that swap width and height


class BalloonDataError(ValueError):
    """Bad input data; the message names the file and the entry."""


def image_size(path: str | Path, where: str = "") -> tuple[int, int]:
    """(width, height) as mmcv's loader sees the image: EXIF rotation applied."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    prefix = f"{where}: " if where else ""
    if not path.is_file():
        raise BalloonDataError(f"{prefix}image not found: {path}")
    try:
        with Image.open(path) as im:
            width, height = im.size
            orientation = im.getexif().get(EXIF_ORIENTATION, 1)
    except (UnidentifiedImageError, OSError) as err:
        raise BalloonDataError(f"{prefix}unreadable image {path} ({err})") from None
    if orientation in TRANSPOSED_ORIENTATIONS:
        width, height = height, width
    return width, height


@contextlib.contextmanager
def atomic_path(final: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``final``; rename it onto ``final`` only on success."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part" + suffix, dir=final.parent)  # real extension last
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


def write_json_atomic(obj, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1) + "\n", encoding="utf-8")
    return Path(path)


def save_figure(fig, out: str | Path | None, dpi: int = 80):
    """Save a matplotlib figure (atomically) unless ``out`` is None.

    Outside Jupyter's inline backend the figure is also released from pyplot, so scripts and
    tests do not pile up open figures; in a notebook pyplot shows it at the end of the cell.
    """
    import matplotlib
    import matplotlib.pyplot as plt

    if out is not None:
        out = Path(out)
        with atomic_path(out, suffix=out.suffix) as tmp:
            fig.savefig(tmp, dpi=dpi)
    if "inline" not in matplotlib.get_backend():
        plt.close(fig)
    return fig
