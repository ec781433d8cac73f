"""The `data` step: get a data set (the balloon archive by default), extract it safely, convert it to COCO.

``prepare_data`` ends with ``ROOT/train/``, ``ROOT/val/`` (the images; for VIA also the original
``via_region_data.json``), ``ROOT/train.json``, ``ROOT/val.json`` (COCO, one class list) and, when it made the
split itself, ``ROOT/split.json``. Nothing reaches ``ROOT`` before the archive was tested, the data set read
(``data.formats``), split (``data.split``), renumbered (``data.classes``) and checked (``data.health``): the
work happens in one temporary folder beside ``ROOT`` (``staging``) that is renamed at the end.

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
from balloondet.core.files import display_path, download, write_json_atomic
from balloondet.data.classes import unify
from balloondet.data.formats import SPLITS, UNSPLIT, VIA_FILE, read_source
from balloondet.data.health import HealthReport, check_health
from balloondet.data.split import SPLIT_FILE, describe, split_images
from balloondet.data.synthetic import make_synthetic_dataset

OFFICIAL_URLS = (
    "https://github.com/matterport/Mask_RCNN/releases/download/v2.1/balloon_dataset.zip",
    "https://download.openmmlab.com/mmyolo/data/balloon_dataset.zip",  # mirror
)
ARCHIVE_NAME = "balloon_dataset.zip"


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
        "could not download the data set:\n" + "\n".join(errors) + "\n"
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


def _stage_source(tmp: Path, source: str | Path | None, synthetic: bool, seed: int, urls: Sequence[str],
                  cache_dir: Path, local_archive: str | Path | None) -> tuple[Path, bool, Path | None]:
    """(the folder holding the raw data set, whether its files may be moved rather than copied, the archive
    it was extracted from)."""
    if synthetic:
        return make_synthetic_dataset(tmp / "synthetic", seed=seed), True, None
    if source is not None and not _is_url(str(source)) and Path(source).is_dir():
        return Path(source), False, None  # the user's own folder: read it, copy from it, change nothing
    archive = _fetch(source, urls, cache_dir, local_archive)
    return safe_extract(archive, tmp / "extract"), True, archive


def convert_source(folder: str | Path, out: str | Path, fmt: str | None = None, class_attribute: str | None = None,
                   val_fraction: float = defaults.VAL_FRACTION, split_seed: int = defaults.SPLIT_SEED,
                   move: bool = False, progress: bool = True) -> HealthReport:
    """Read the data set in ``folder`` (``fmt``, else detected), split it when it has no train/val, give every
    split one class list, check its health, and only then write ``out/{train,val}.json`` with the images in
    ``out/{train,val}/`` (moved when ``move``, else copied) and, for a split made here, ``out/split.json``.
    Returns the health report; raises ``DataError`` on any fault, before ``out`` is written to."""
    fmt, splits = read_source(folder, fmt, class_attribute)
    record = None
    if UNSPLIT in splits:
        splits, record = split_images(splits[UNSPLIT], val_fraction, split_seed)
        print(describe(record))
    classes, notes = unify(splits)
    report = check_health(splits, classes, progress=progress)
    for note in notes:
        report.note("renumbered", note)
    print(f"format {fmt}, {len(classes)} class{'es' * (len(classes) != 1)}: {', '.join(classes)}")
    print(report.summary())
    if report.notes:
        print(report.details(limit=3))
    report.raise_for_faults()
    out = Path(out)
    for split, raw in splits.items():
        for img in raw.coco["images"]:
            src, dst = raw.image_dir / img["file_name"], out / split / img["file_name"]
            dst.parent.mkdir(parents=True, exist_ok=True)
            (shutil.move if move else shutil.copy2)(str(src), str(dst))
        if fmt == "via" and Path(raw.where).name == VIA_FILE:  # keep the original annotations beside their images
            shutil.copy2(raw.where, out / split / VIA_FILE)
        coco = {"info": raw.coco.get("info") or {"description": f"converted from {Path(raw.where).name} by balloondet"},
                **{k: raw.coco[k] for k in ("images", "annotations", "categories")}}
        write_json_atomic(coco, out / f"{split}.json")
        print(f"{split}: {len(coco['images'])} images, {len(coco['annotations'])} boxes -> {split}.json")
    if record:
        write_json_atomic(record, out / SPLIT_FILE)
    return report


def prepare_data(
    source: str | Path | None = None,
    root: str | Path = defaults.DATA_ROOT,
    synthetic: bool = False,
    seed: int = 0,
    urls: Sequence[str] = OFFICIAL_URLS,
    force: bool = False,
    local_archive: str | Path | None = None,
    fmt: str | None = None,
    val_fraction: float = defaults.VAL_FRACTION,
    split_seed: int = defaults.SPLIT_SEED,
    class_attribute: str | None = None,
) -> Path:
    """The data step: bring the data set (``source``: a URL, a ``.zip`` or a folder, in any of the formats of
    ``data.formats``; without one, the balloon archive), convert, split and check it (``convert_source``) in
    one staging folder beside ``root``; returns ``root``.

    ``root`` is replaced only once everything converted and passed the health check, so bad annotations
    never replace a good data set. Without ``source``, ``synthetic`` or ``force``, a ``root`` that already
    holds both COCO files is reused as it is. ``local_archive``: a local copy of the balloon archive (else
    ``$BALLOONDET_LOCAL_ARCHIVE``), used before any download.
    """
    root = Path(root)
    if not force and source is None and not synthetic and all((root / f"{s}.json").is_file() for s in SPLITS):
        print(f"{display_path(root)} already holds the converted dataset (use force=True / --force to redo it)")
        return root
    with staging(root) as tmp:
        folder, move, archive = _stage_source(tmp, source, synthetic, seed, urls, root.parent, local_archive)
        staged = tmp / "staged"
        try:
            convert_source(folder, staged, fmt, class_attribute, val_fraction, split_seed, move=move)
        except DataError as err:
            if archive is None:
                raise
            # name the archive the user has, not the temporary folder it was extracted into
            raise DataError(str(err).replace(str(folder), str(archive))) from None
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


def _fetch(source: str | Path | None, urls: Sequence[str], cache_dir: Path,
           local_archive: str | Path | None = None) -> Path:
    """The archive to extract: the local copy, a download (kept in ``cache_dir``) or the file given."""
    if source is None:
        archive = _local_copy(cache_dir / ARCHIVE_NAME, local_archive)
        if archive:
            print(f"using the local copy {display_path(archive)}")
        else:
            archive = download_first(urls, cache_dir / ARCHIVE_NAME)
    elif _is_url(str(source)):
        name = PurePosixPath(str(source).split("?")[0]).name or ARCHIVE_NAME
        archive = download_first([str(source)], cache_dir / (ARCHIVE_NAME if source in urls else name))
    else:
        archive = Path(source)
        if not archive.is_file():
            raise DataError(f"{archive}: no such archive or folder (--source takes a URL, a .zip or a folder)")
    return archive
