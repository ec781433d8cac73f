"""Check a data set before anything trains on it: ``check_health`` (run by ``data``), ``check_data`` (a converted
one: ``balloondet check-data``).

Every image is decoded in full (a truncated JPEG decodes halfway in OpenCV and trains as grey pixels), every
box checked against its image. Hard faults stop the data step with an error naming the file and the entry:
an image that is unreadable, truncated, under ``MIN_SIDE`` px, or not the size its annotation says; a box
without size, or wholly outside its image. Soft ones are repaired or only counted, each listed: a box
partly outside (clipped), the same box twice (one dropped), a grayscale, CMYK or alpha image (loaded as
3-channel colour), an EXIF-rotated one (loaded upright, as mmcv does), an image without boxes (kept as a
negative). The report also counts classes per split, boxes per image and box sizes by COCO's bands.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from balloondet.core import defaults
from balloondet.core.errors import DataError
from balloondet.core.images import EXIF_ORIENTATION, TRANSPOSED_ORIENTATIONS
from balloondet.data.formats import SPLITS, RawSplit

MIN_SIDE = 10  # px: smaller images are faults (Ultralytics' limit)
BANDS = (("small", 0, 32 ** 2), ("medium", 32 ** 2, 96 ** 2), ("large", 96 ** 2, math.inf))  # COCO's, by area
COLOUR_MODES = {"RGB", "YCbCr"}  # decoded as they are; any other mode is converted on load (a soft note)
MAX_LISTED = 10  # faults shown in the error; all are in the report


@dataclass
class HealthReport:
    """What ``check_health`` found: hard ``faults``, soft ``notes`` by kind, and the counts per split."""

    classes: list[str]
    faults: list[str] = field(default_factory=list)
    notes: dict[str, list[str]] = field(default_factory=dict)
    splits: dict[str, dict] = field(default_factory=dict)  # split -> counts (see _count)
    boxes: dict[str, list[tuple[float, float, float, int]]] = field(default_factory=dict)  # (cx/W, cy/H, area, cls)

    def note(self, kind: str, entry: str) -> None:
        self.notes.setdefault(kind, []).append(entry)

    def summary(self) -> str:
        """One line: images, classes, boxes, negatives, then faults and notes by kind."""
        images = sum(s["images"] for s in self.splits.values())
        per_split = ", ".join(f"{s['images']} {name}" for name, s in self.splits.items())
        boxes = sum(s["boxes"] for s in self.splits.values())
        negatives = sum(s["negatives"] for s in self.splits.values())
        soft = sum(len(v) for v in self.notes.values())
        kinds = "; ".join(f"{len(v)} {k}" for k, v in self.notes.items())
        return (f"health: {images} images ({per_split}), {len(self.classes)} class{'es' * (len(self.classes) != 1)}, "
                f"{boxes} boxes, {negatives} image(s) without boxes; {len(self.faults)} fault(s), {soft} note(s)"
                + (f" ({kinds})" if kinds else ""))

    def table(self) -> str:
        """Per split: images, negatives, boxes per class, boxes per image, box sizes by COCO's bands."""
        names = list(self.splits)
        rows = [("images", [s["images"] for s in self.splits.values()]),
                ("without boxes", [s["negatives"] for s in self.splits.values()]),
                ("boxes", [s["boxes"] for s in self.splits.values()])]
        rows += [(f"  {c}", [s["per_class"][i] for s in self.splits.values()]) for i, c in enumerate(self.classes)]
        rows += [("boxes per image (mean)", [f"{s['boxes'] / max(s['images'], 1):.1f}" for s in self.splits.values()]),
                 ("boxes per image (max)", [s["max_per_image"] for s in self.splits.values()])]
        rows += [(f"{band} (COCO)", [s["bands"][band] for s in self.splits.values()]) for band, _, _ in BANDS]
        width = max(len(r[0]) for r in rows)
        lines = [f"{'':{width}}  " + "  ".join(f"{n:>7}" for n in names)]
        lines += [f"{label:{width}}  " + "  ".join(f"{v:>7}" for v in values) for label, values in rows]
        return "\n".join(lines)

    def details(self, limit: int = MAX_LISTED) -> str:
        """The notes, a few of each kind, naming file and entry."""
        lines = []
        for kind, entries in self.notes.items():
            lines.append(f"{kind} ({len(entries)}):")
            lines += [f"  {e}" for e in entries[:limit]] + ([f"  ... and {len(entries) - limit} more"]
                                                             if len(entries) > limit else [])
        return "\n".join(lines)

    def raise_for_faults(self) -> None:
        if self.faults:
            shown = "\n  ".join(self.faults[:MAX_LISTED])
            more = f"\n  ... and {len(self.faults) - MAX_LISTED} more" if len(self.faults) > MAX_LISTED else ""
            raise DataError(f"the data set has {len(self.faults)} fault(s) to fix before training:\n  {shown}{more}")


def inspect_image(path: Path) -> tuple[tuple[int, int] | None, list[tuple[str, str]], str | None]:
    """((width, height) upright, [(note kind, why)], fault) of one image file, decoded in full."""
    from PIL import Image, ImageFile, UnidentifiedImageError

    notes = []
    truncated_ok, ImageFile.LOAD_TRUNCATED_IMAGES = ImageFile.LOAD_TRUNCATED_IMAGES, False
    try:
        with Image.open(path) as im:
            mode, orientation = im.mode, im.getexif().get(EXIF_ORIENTATION, 1)
            im.load()  # the whole picture: a truncated file fails here, not at open
            width, height = im.size
    except FileNotFoundError:
        return None, notes, "image file not found"
    except UnidentifiedImageError:
        return None, notes, "not an image (no reader recognises the file)"
    except (OSError, SyntaxError, ValueError) as err:
        return None, notes, f"damaged image ({err})"
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = truncated_ok
    if orientation in TRANSPOSED_ORIENTATIONS:
        width, height = height, width
    if orientation not in (1, None):
        notes.append(("EXIF-rotated", f"orientation {orientation}: loaded upright, as mmcv does; "
                                      "its boxes must be on the upright picture"))
    if mode not in COLOUR_MODES:
        kind = {"L": "grayscale", "LA": "grayscale", "1": "grayscale", "I;16": "grayscale", "I": "grayscale",
                "CMYK": "CMYK", "RGBA": "alpha channel", "P": "palette"}.get(mode, f"mode {mode}")
        notes.append((kind, f"mode {mode}: loaded as 3-channel colour"))
    if min(width, height) < MIN_SIDE:
        return (width, height), notes, f"{width}x{height} px: smaller than {MIN_SIDE} px"
    return (width, height), notes, None


def check_health(splits: dict[str, RawSplit], classes: list[str], progress: bool = True) -> HealthReport:
    """Check (and repair what is safe to) the splits in place; returns the report. Call ``raise_for_faults``."""
    from tqdm.auto import tqdm

    report = HealthReport(list(classes))
    total = sum(len(r.coco["images"]) for r in splits.values())
    with tqdm(total=total, desc="check images", unit="img", disable=not progress or total < 50) as bar:
        for split, raw in splits.items():
            sizes = {}
            for img in raw.coco["images"]:
                where = f"{raw.where}: image {img['file_name']!r}"
                size, notes, fault = inspect_image(raw.image_dir / img["file_name"])
                for kind, why in notes:
                    report.note(kind, f"{where}: {why}")
                if fault:
                    report.faults.append(f"{where}: {fault}")
                elif (img.get("width"), img.get("height")) != size:
                    report.faults.append(f"{where}: the annotation says {img.get('width')}x{img.get('height')} px, "
                                         f"the file is {size[0]}x{size[1]} (upright)")
                sizes[img["id"]] = size
                bar.update()
            raw.coco["annotations"] = _check_boxes(raw, sizes, report)
            report.splits[split], report.boxes[split] = _count(raw.coco, sizes, len(classes))
    for split, counts in report.splits.items():
        if counts["negatives"]:
            report.note("without boxes", f"{split}: {counts['negatives']} image(s) kept as negatives")
    return report


def _check_boxes(raw: RawSplit, sizes: dict, report: HealthReport) -> list[dict]:
    """The annotations to keep: boxes clipped to their image, exact duplicates dropped; faults recorded."""
    names = {img["id"]: img["file_name"] for img in raw.coco["images"]}
    kept, seen = [], set()
    for ann in raw.coco["annotations"]:
        where = f"{raw.where}: image {names[ann['image_id']]!r} annotation {ann.get('id')}"
        box = ann["bbox"]
        if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) and math.isfinite(v)
                                                                 for v in box)):
            report.faults.append(f"{where}: bbox {box!r} is not 4 finite numbers [x, y, width, height]")
            continue
        x, y, w, h = box
        if w <= 0 or h <= 0:
            report.faults.append(f"{where}: box {box} has zero or negative size")
            continue
        size = sizes.get(ann["image_id"])
        if size is not None:
            width, height = size
            x1, y1, x2, y2 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
            if x2 <= x1 or y2 <= y1:
                report.faults.append(f"{where}: box {box} lies outside the {width}x{height} image")
                continue
            if (x1, y1, x2, y2) != (x, y, x + w, y + h):
                report.note("clipped", f"{where}: box {box} reaches outside the {width}x{height} image: clipped")
                clipped = [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)]
                ann = {**ann, "bbox": clipped, "area": round(min(ann.get("area", w * h), clipped[2] * clipped[3]), 3)}
        key = (ann["image_id"], ann["category_id"], *(round(v, 1) for v in ann["bbox"]))
        if key in seen:
            report.note("duplicate box", f"{where}: the same box as an earlier one of its class: dropped")
            continue
        seen.add(key)
        kept.append(ann)
    return kept


def _count(coco: dict, sizes: dict, n_classes: int) -> tuple[dict, list]:
    per_image: dict[int, int] = {img["id"]: 0 for img in coco["images"]}
    per_class, bands, where = [0] * n_classes, {b: 0 for b, _, _ in BANDS}, []
    for ann in coco["annotations"]:
        per_image[ann["image_id"]] += 1
        per_class[ann["category_id"] - 1] += 1
        x, y, w, h = ann["bbox"]
        area = ann.get("area") or w * h
        bands[next(b for b, lo, hi in BANDS if lo <= area < hi)] += 1
        width, height = sizes.get(ann["image_id"]) or (1, 1)
        where.append(((x + w / 2) / width, (y + h / 2) / height, area, ann["category_id"] - 1))
    counts = {"images": len(coco["images"]), "negatives": sum(n == 0 for n in per_image.values()),
              "boxes": len(coco["annotations"]), "per_class": per_class,
              "max_per_image": max(per_image.values(), default=0), "bands": bands}
    return counts, where


def check_data(root: str | Path = defaults.DATA_ROOT, progress: bool = True) -> HealthReport:
    """The health report of a converted data set (``ROOT/{train,val}.json`` and their image folders); repairs
    nothing on disk (``data`` repaired what it could when it converted the set)."""
    from balloondet.core.classes import read_classes
    from balloondet.core.files import load_json

    root = Path(root)
    splits = {}
    for split in SPLITS:
        path = root / f"{split}.json"
        splits[split] = RawSplit(load_json(path, f"the converted {split} split (`balloondet data` writes it)"),
                                 root / split, str(path))
    return check_health(splits, list(read_classes(root) or ()), progress=progress)
