"""The `data` step: get the balloon archive, extract it safely, convert VIA to COCO.

``prepare_data`` ends with ``ROOT/train/``, ``ROOT/val/`` (images and the original VIA
json) and ``ROOT/train.json``, ``ROOT/val.json`` (COCO). Nothing reaches ``ROOT`` before
the archive was tested, its layout checked and both splits converted: the work happens
in one temporary folder beside ``ROOT`` (``staging``) that is renamed at the end.

Without a ``source``, a local copy of the official archive is used before any download:
the ``local_archive`` argument, else the file named by ``$BALLOONDET_LOCAL_ARCHIVE``.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Iterator, Sequence

from balloondet.core import defaults
from balloondet.core.errors import DataError
from balloondet.core.files import display_path, download
from balloondet.data.synthetic import make_synthetic_dataset
from balloondet.data.via import convert

OFFICIAL_URLS = (
    "https://github.com/matterport/Mask_RCNN/releases/download/v2.1/balloon_dataset.zip",
    "https://download.openmmlab.com/mmyolo/data/balloon_dataset.zip",  # mirror
)
ARCHIVE_NAME = "balloon_dataset.zip"
SPLITS = ("train", "val")
VIA_FILE = "via_region_data.json"


# --- download -------------------------------------------------------------------------
def download_first(urls: Sequence[str], dest: str | Path, timeout: float = 30.0) -> Path:
    """Try each URL in turn; the error lists every failure and what to do offline."""
    errors = []
    for url in urls:
        try:
            return download(url, dest, timeout=timeout)
        except DataError as err:
            errors.append(f"  {err}")
    raise DataError(
        "could not download the balloon dataset:\n" + "\n".join(errors) + "\n"
        "Offline? Use a local copy with `balloondet data --source path/to/balloon_dataset.zip` "
        "(or an extracted folder), or run everything on generated data with `balloondet data --synthetic`."
    )


# --- extract --------------------------------------------------------------------------
def safe_extract(zip_path: str | Path, dest: str | Path) -> Path:
    """Extract a zip after testing it; refuses absolute paths, ``..`` entries and links."""
    zip_path, dest = Path(zip_path), Path(dest)
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as err:
        raise DataError(f"{zip_path}: not a readable zip archive ({err})") from None
    with zf:
        for info in zf.infolist():
            name = info.filename
            parts = PurePosixPath(name.replace("\\", "/")).parts
            if name.startswith(("/", "\\")) or (parts and parts[0].endswith(":")) or ".." in parts:
                raise DataError(f"{zip_path}: entry {name!r} points outside the archive folder; "
                                "refusing to extract")
            if stat.S_ISLNK(info.external_attr >> 16):
                raise DataError(f"{zip_path}: entry {name!r} is a symbolic link; refusing to extract")
        try:
            bad = zf.testzip()
        except (zipfile.BadZipFile, OSError, EOFError) as err:  # truncated archives fail here
            raise DataError(f"{zip_path}: archive is damaged ({err})") from None
        if bad is not None:
            raise DataError(f"{zip_path}: entry {bad!r} fails its CRC check; the archive is damaged")
        zf.extractall(dest)
    return dest


def find_layout(folder: str | Path) -> Path:
    """The folder holding ``train/`` and ``val/`` with their VIA files (maybe one level down)."""
    folder = Path(folder)
    candidates = [folder] + sorted(p for p in folder.iterdir() if p.is_dir())
    for cand in candidates:
        if all((cand / s / VIA_FILE).is_file() for s in SPLITS):
            return cand
    expected = ", ".join(f"{s}/{VIA_FILE}" for s in SPLITS)
    raise DataError(f"{folder}: not the balloon layout; expected {expected} "
                    "(optionally inside one folder such as balloon/)")


# --- the step -------------------------------------------------------------------------
@contextlib.contextmanager
def staging(root: Path) -> Iterator[Path]:
    """A temporary folder beside ``root`` (the same file system: a rename moves a result into place),
    removed at the end whatever happens."""
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{root.name}.", dir=root.parent) as tmp:
        yield Path(tmp)


def _move_into_place(staged: Path, root: Path) -> None:
    """Replace ``root`` by the finished ``staged`` folder (same file system: a rename)."""
    if root.exists():
        shutil.rmtree(root)
    staged.rename(root)


def _is_url(source: str) -> bool:
    return source.startswith(("http://", "https://", "file://"))


def _stage_raw(tmp: Path, source: str | Path | None, synthetic: bool, seed: int, urls: Sequence[str],
               cache_dir: Path, local_archive: str | Path | None) -> Path:
    """The raw VIA layout (``train/``, ``val/``) as a folder ``tmp/staged``, built inside ``tmp``."""
    if synthetic:
        layout = make_synthetic_dataset(tmp / "synthetic", seed=seed)
    else:
        layout = _fetch(source, urls, cache_dir, tmp, local_archive)
    staged = tmp / "staged"
    staged.mkdir()
    for split in SPLITS:
        shutil.move(str(layout / split), str(staged / split))
    return staged


def download_data(
    source: str | Path | None = None,
    root: str | Path = defaults.DATA_ROOT,
    synthetic: bool = False,
    seed: int = 0,
    urls: Sequence[str] = OFFICIAL_URLS,
    cache_dir: str | Path | None = None,
    local_archive: str | Path | None = None,
) -> Path:
    """Bring the raw VIA layout (``ROOT/train``, ``ROOT/val``) into ``root``; returns ``root``.

    A part of ``prepare_data``, which is the step: on its own this replaces ``root`` with
    unconverted data. ``source`` is a URL, a local ``.zip`` or an extracted folder. Without
    one, a local copy of the official archive is used when present (``local_archive``, else
    ``$BALLOONDET_LOCAL_ARCHIVE``), else the official URLs are downloaded. ``synthetic``
    writes generated data instead. ``root`` is replaced only at the end. A downloaded
    archive is kept in ``cache_dir`` (default: next to ``root``).
    """
    root = Path(root)
    with staging(root) as tmp:
        staged = _stage_raw(tmp, source, synthetic, seed, urls, Path(cache_dir) if cache_dir else root.parent,
                            local_archive)
        _move_into_place(staged, root)
    return root


def convert_data(root: str | Path = defaults.DATA_ROOT) -> dict[str, dict]:
    """VIA -> COCO for both splits: ``ROOT/train.json`` and ``ROOT/val.json``."""
    root = Path(root)
    cocos = {}
    for split in SPLITS:
        cocos[split] = coco = convert(root / split / VIA_FILE, root / split, root / f"{split}.json")
        print(f"{split}: {len(coco['images'])} images, {len(coco['annotations'])} boxes -> {split}.json")
    return cocos


def prepare_data(
    source: str | Path | None = None,
    root: str | Path = defaults.DATA_ROOT,
    synthetic: bool = False,
    seed: int = 0,
    urls: Sequence[str] = OFFICIAL_URLS,
    force: bool = False,
    local_archive: str | Path | None = None,
) -> Path:
    """The data step: the raw layout (as ``download_data`` brings it) converted (``convert_data``) in one
    staging folder beside ``root``; returns ``root``.

    ``root`` is replaced only once both splits converted, so bad annotations never replace a good
    dataset. Without ``source``, ``synthetic`` or ``force``, a ``root`` that already holds both COCO
    files is reused as it is. ``local_archive``: see ``download_data``.
    """
    root = Path(root)
    if not force and source is None and not synthetic and all((root / f"{s}.json").is_file() for s in SPLITS):
        print(f"{display_path(root)} already holds the converted dataset (use force=True / --force to redo it)")
        return root
    with staging(root) as tmp:
        staged = _stage_raw(tmp, source, synthetic, seed, urls, root.parent, local_archive)
        convert_data(staged)
        _move_into_place(staged, root)
    print(f"dataset ready in {display_path(root)}")
    return root


def _local_copy(cached: Path, local_archive: str | Path | None) -> Path | None:
    """The archive to use instead of a download: one cached by an earlier download, else the local copy."""
    if cached.is_file():
        return cached
    local = local_archive or os.environ.get(defaults.LOCAL_ARCHIVE_ENV)
    if not local:
        return None
    if Path(local).is_file():
        return Path(local)
    print(f"no local copy of the archive at {display_path(local)}")
    return None


def _fetch(source: str | Path | None, urls: Sequence[str], cache_dir: Path, tmp: Path,
           local_archive: str | Path | None = None) -> Path:
    """Bring the raw VIA layout into ``tmp``; returns the folder holding train/ and val/."""
    cached = cache_dir / ARCHIVE_NAME
    if source is None:
        archive = _local_copy(cached, local_archive)
        if archive:
            print(f"using the local copy {display_path(archive)}")
        else:
            archive = download_first(urls, cached)
    elif _is_url(str(source)):
        archive = download_first([str(source)], cached)
    else:
        path = Path(source)
        if path.is_dir():
            layout = find_layout(path)
            copy = tmp / "copy"
            for split in SPLITS:
                shutil.copytree(layout / split, copy / split)
            return copy
        if not path.is_file():
            raise DataError(f"{path}: no such archive or folder (--source takes a URL, a .zip or a folder)")
        archive = path
    return find_layout(safe_extract(archive, tmp / "extract"))
