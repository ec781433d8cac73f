"""Bring a data set in any of four formats as COCO dicts, one per split: ``read_source``.

COCO JSON is the native form; VIA is this package's converter (``via``); YOLO and Pascal VOC are read by
supervision (``DetectionDataset.from_yolo`` / ``from_pascal_voc``), then turned into COCO here. Each reader
finds the usual layouts of its format (the tool that wrote it, Roboflow's exports, one flat folder); a set
without a split comes back as the one split ``all`` (``data.split`` divides it). Ids are left as the source
has them: ``data.classes`` checks and renumbers them, ``data.health`` checks the images and boxes.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from balloondet.core import defaults
from balloondet.core.errors import DataError
from balloondet.core.images import image_size

FORMATS = defaults.DATA_FORMATS
SPLITS = ("train", "val")
UNSPLIT = "all"  # the one split of a data set that comes without train and val
SPLIT_ALIASES = {"train": ("train", "training"), "val": ("val", "valid", "validation")}  # Roboflow writes "valid"
VIA_FILE = "via_region_data.json"


@dataclass
class RawSplit:
    """One split as read: a COCO detection dict (the source's ids), the folder its ``file_name``s are relative
    to, and the file (or folder) that errors about it name."""

    coco: dict
    image_dir: Path
    where: str


# --- finding the format ---------------------------------------------------------------
def _roots(folder: Path) -> list[Path]:
    """``folder`` and, for archives that wrap everything in one folder, its sub-folders."""
    return [folder] + sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "__")))


def _coco_files(folder: Path) -> list[Path]:
    found = []
    for path in sorted(list(folder.glob("*.json")) + list(folder.glob("annotations/*.json"))
                       + list(folder.glob("*/_annotations.coco.json"))):
        try:
            head = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(head, dict) and "images" in head and "annotations" in head:
            found.append(path)
    return found


def _yaml_with_names(folder: Path) -> Path | None:
    import yaml

    for path in sorted(list(folder.glob("*.yaml")) + list(folder.glob("*.yml"))):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue
        if isinstance(data, dict) and "names" in data:
            return path
    return None


def _has_xml(folder: Path) -> bool:
    return any(folder.glob("*.xml")) or any(folder.glob("*/*.xml"))


def detect_format(folder: str | Path) -> tuple[str, Path]:
    """(format, the folder holding it): VIA files, else COCO JSON, else a YOLO ``data.yaml``, else VOC XML."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder")
    for root in _roots(folder):
        if (root / VIA_FILE).is_file() or all((root / s / VIA_FILE).is_file() for s in SPLITS):
            return "via", root
        if _coco_files(root):
            return "coco", root
        if _yaml_with_names(root):
            return "yolo", root
        if _has_xml(root):
            return "voc", root
    raise DataError(
        f"{folder}: no data set found. Expected one of: VIA ({'{train,val}/'}{VIA_FILE}), COCO JSON "
        "(train.json and val.json, annotations/instances_*.json, or one .json), YOLO (a data.yaml with 'names' "
        "beside images/ and labels/), Pascal VOC (.xml files, e.g. Annotations/ beside JPEGImages/); "
        "say which with --format")


def read_source(folder: str | Path, fmt: str | None = None, class_attribute: str | None = None
                ) -> tuple[str, dict[str, RawSplit]]:
    """(format, ``{split: RawSplit}``) of the data set in ``folder``: ``train`` and ``val``, or ``all``."""
    folder = Path(folder)
    if fmt is None:
        fmt, root = detect_format(folder)
    elif fmt not in FORMATS:
        raise DataError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    else:
        root = next((r for r in _roots(folder) if detect_format_at(r) == fmt), folder)
    reader = {"coco": read_coco, "via": read_via, "yolo": read_yolo, "voc": read_voc}[fmt]
    return fmt, reader(root, class_attribute) if fmt == "via" else reader(root)


def detect_format_at(root: Path) -> str | None:
    """The format of ``root`` itself (not its sub-folders), or None."""
    if (root / VIA_FILE).is_file() or all((root / s / VIA_FILE).is_file() for s in SPLITS):
        return "via"
    if _coco_files(root):
        return "coco"
    if _yaml_with_names(root):
        return "yolo"
    return "voc" if _has_xml(root) else None


def _split_dirs(root: Path, split: str) -> list[Path]:
    return [root / a for a in SPLIT_ALIASES[split] if (root / a).is_dir()]


# --- VIA ------------------------------------------------------------------------------
def read_via(root: Path, class_attribute: str | None = None) -> dict[str, RawSplit]:
    """``train/`` and ``val/`` with their VIA files (the balloon archive), or one VIA file beside its images."""
    from balloondet.data.via import via_to_coco

    if all((root / s / VIA_FILE).is_file() for s in SPLITS):
        return {s: RawSplit(via_to_coco(root / s / VIA_FILE, root / s, class_attribute), root / s,
                            str(root / s / VIA_FILE)) for s in SPLITS}
    if (root / VIA_FILE).is_file():
        return {UNSPLIT: RawSplit(via_to_coco(root / VIA_FILE, root, class_attribute), root, str(root / VIA_FILE))}
    raise DataError(f"{root}: no VIA file; expected {VIA_FILE} in train/ and val/, or beside the images")


# --- COCO -----------------------------------------------------------------------------
def _image_dir_for(coco: dict, candidates: list[Path], where: Path) -> Path:
    """The first candidate folder that holds the split's first image."""
    first = next((img.get("file_name") for img in coco.get("images") or [] if isinstance(img, dict)), None)
    if first is None:
        return candidates[0]
    for cand in candidates:
        if (cand / first).is_file():
            return cand
    tried = ", ".join(str(c) for c in candidates)
    raise DataError(f"{where}: image {first!r} not found in any of {tried}")


def _load_coco(path: Path) -> dict:
    try:
        coco = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: not valid JSON ({err})") from None
    for key in ("images", "annotations", "categories"):
        if not isinstance(coco.get(key), list):
            raise DataError(f"{path}: no list of {key!r}; expected COCO detection JSON")
    return coco


def read_coco(root: Path) -> dict[str, RawSplit]:
    """COCO JSON per split (``train.json``/``val.json``, ``annotations/instances_train*.json``, Roboflow's
    ``train/_annotations.coco.json``), or one JSON for the whole set."""
    files = _coco_files(root)
    by_split: dict[str, Path] = {}
    for split in SPLITS:
        for path in files:
            stem = path.stem.lower().removeprefix("instances_").removesuffix(".coco")
            parent = path.parent.name.lower()
            names = SPLIT_ALIASES[split]
            if any(stem == a or stem.startswith(a) and stem[len(a):].isdigit() for a in names) or \
                    (stem == "_annotations" and parent in names):
                by_split.setdefault(split, path)
    if len(by_split) == 2:
        out = {}
        for split, path in by_split.items():
            coco = _load_coco(path)
            stem = path.stem.removeprefix("instances_")
            candidates = [path.parent] + _split_dirs(root, split) + [root / "images" / a for a in SPLIT_ALIASES[split]
                                                                     ] + [root / stem, root / "images", root]
            out[split] = RawSplit(coco, _image_dir_for(coco, candidates, path), str(path))
        return out
    if len(files) == 1:
        coco = _load_coco(files[0])
        return {UNSPLIT: RawSplit(coco, _image_dir_for(coco, [files[0].parent, root / "images", root], files[0]),
                                  str(files[0]))}
    names = ", ".join(str(f.relative_to(root)) for f in files)
    raise DataError(f"{root}: COCO files {names}: expected train.json and val.json (or instances_train*/val*), "
                    "or one file for the whole set")


# --- YOLO and VOC, through supervision ------------------------------------------------
def _detections_to_coco(classes: list[str], annotations: dict, image_dir: Path, where: str) -> dict:
    """supervision's ``{image path: Detections}`` as a COCO dict: category ids 1..K in ``classes``' order."""
    images, anns = [], []
    for image_id, (path, det) in enumerate(sorted(annotations.items()), start=1):
        path = Path(path)
        width, height = image_size(path, where)
        images.append({"id": image_id, "file_name": path.relative_to(image_dir).as_posix(),
                       "width": width, "height": height})
        for (x1, y1, x2, y2), class_id in zip(det.xyxy.tolist(), det.class_id.tolist(), strict=True):
            if not 0 <= class_id < len(classes):
                raise DataError(f"{where}: {path.name}: class id {class_id} is out of range "
                                f"({len(classes)} classes: 0..{len(classes) - 1})")
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": int(class_id) + 1,
                         "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)],
                         "area": round((x2 - x1) * (y2 - y1), 3), "iscrowd": 0})
    return {"images": images, "annotations": anns,
            "categories": [{"id": i, "name": n} for i, n in enumerate(classes, start=1)]}


def _supervision_error(err: Exception, where: str) -> DataError:
    return DataError(f"{where}: {err}")


def read_yolo(root: Path) -> dict[str, RawSplit]:
    """A ``data.yaml`` (class names in id order) with ``images/{train,val}`` and ``labels/{train,val}``
    (Ultralytics), ``{train,valid}/images`` and ``.../labels`` (Roboflow), or ``images/`` and ``labels/``."""
    import supervision as sv

    yaml_path = _yaml_with_names(root)
    if yaml_path is None:
        raise DataError(f"{root}: no YOLO data.yaml with 'names'")
    layouts: dict[str, tuple[Path, Path]] = {}
    for split in SPLITS:
        for alias in SPLIT_ALIASES[split]:
            for images, labels in ((root / "images" / alias, root / "labels" / alias),
                                   (root / alias / "images", root / alias / "labels")):
                if images.is_dir() and split not in layouts:
                    layouts[split] = (images, labels)
    if len(layouts) != 2:
        if not (root / "images").is_dir():
            raise DataError(f"{yaml_path}: no images/train and images/val (or train/images and valid/images), "
                            "nor one images/ folder beside labels/")
        layouts = {UNSPLIT: (root / "images", root / "labels")}
    out = {}
    for split, (images, labels) in layouts.items():
        try:
            ds = sv.DetectionDataset.from_yolo(str(images), str(labels), str(yaml_path))
        except (ValueError, OSError, KeyError) as err:
            raise _supervision_error(err, str(labels)) from None
        out[split] = RawSplit(_detections_to_coco(list(ds.classes), dict(ds.annotations), images, str(labels)),
                              images, str(labels))
    return out


def read_voc(root: Path) -> dict[str, RawSplit]:
    """Pascal VOC XML: ``Annotations/`` beside ``JPEGImages/`` (split by ``ImageSets/Main/{train,val}.txt``
    when present), ``train/`` and ``val/`` folders, ``annotations/`` beside ``images/``, or one flat folder
    of images and their XML side by side (labelImg). Class order: the names, sorted."""
    import supervision as sv

    if (root / "Annotations").is_dir():
        pairs = {UNSPLIT: (root / "JPEGImages" if (root / "JPEGImages").is_dir() else root, root / "Annotations")}
    elif all(_split_dirs(root, s) and _has_xml(_split_dirs(root, s)[0]) for s in SPLITS):
        pairs = {s: (_split_dirs(root, s)[0], _split_dirs(root, s)[0]) for s in SPLITS}
    elif (root / "annotations").is_dir() and (root / "images").is_dir():
        pairs = {UNSPLIT: (root / "images", root / "annotations")}
    else:
        pairs = {UNSPLIT: (root, root)}
    read = {}
    for split, (images, xmls) in pairs.items():
        try:
            ds = sv.DetectionDataset.from_pascal_voc(str(images), str(xmls))
        except (ValueError, OSError, KeyError) as err:
            raise _supervision_error(err, str(xmls)) from None
        read[split] = (ds, images, xmls)
    classes = sorted({c for ds, _, _ in read.values() for c in ds.classes})
    out = {}
    for split, (ds, images, xmls) in read.items():
        order = {i: classes.index(c) for i, c in enumerate(ds.classes)}
        annotations = {}
        for path, det in ds.annotations.items():
            det.class_id = [order[int(c)] for c in det.class_id]
            annotations[path] = det
        out[split] = RawSplit(_remapped(classes, annotations, images, str(xmls)), images, str(xmls))
    image_sets = root / "ImageSets" / "Main"
    if UNSPLIT in out and all((image_sets / f"{s}.txt").is_file() for s in SPLITS):
        return _split_by_lists(out[UNSPLIT], {s: image_sets / f"{s}.txt" for s in SPLITS})
    return out


def _remapped(classes: list[str], annotations: dict, image_dir: Path, where: str) -> dict:
    import numpy as np

    for det in annotations.values():
        det.class_id = np.asarray(det.class_id, dtype=int)
    return _detections_to_coco(classes, annotations, image_dir, where)


def _split_by_lists(raw: RawSplit, lists: dict[str, Path]) -> dict[str, RawSplit]:
    """A VOC set divided as its ``ImageSets/Main/{train,val}.txt`` say (one image stem per line)."""
    out = {}
    for split, path in lists.items():
        stems = {line.split()[0] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()}
        images = [img for img in raw.coco["images"] if Path(img["file_name"]).stem in stems]
        ids = {img["id"] for img in images}
        out[split] = RawSplit({**raw.coco, "images": images,
                               "annotations": [a for a in raw.coco["annotations"] if a["image_id"] in ids]},
                              raw.image_dir, str(path))
    return out
