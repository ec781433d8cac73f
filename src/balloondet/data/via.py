"""Convert VGG Image Annotator (VIA) exports to COCO detection JSON.

Reads VIA 1.x files (``via_region_data.json``: a dict of images whose ``regions`` is a
dict) and VIA 2.x files (project files with ``_via_img_metadata``, or exported
annotations, whose ``regions`` is a list). Shapes ``polygon``, ``rect``, ``circle`` and
``ellipse`` become polygons (curves are sampled); other shapes are skipped with a
warning. Every polygon is clipped to its image; the box is the clipped polygon's extent
and ``area`` its shoelace area. Images without regions stay in the file as negatives.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

from balloondet.core.errors import DataError
from balloondet.core.files import write_json_atomic
from balloondet.core.images import image_size
from balloondet.data.polygons import Point, clip_polygon, ellipse_polygon, polygon_area, polygon_bbox

DEFAULT_CLASS = "balloon"
CURVE_VERTICES = 32  # vertices used to turn a circle or an ellipse into a polygon
SUPPORTED_SHAPES = ("polygon", "rect", "circle", "ellipse")


# --- VIA shapes -----------------------------------------------------------------------
def shape_to_polygon(shape: dict, where: str) -> list[Point] | None:
    """Vertices of a VIA ``shape_attributes`` dict, or None for unsupported shapes."""
    name = shape.get("name")
    try:
        if name == "polygon":
            xs, ys = shape["all_points_x"], shape["all_points_y"]
            if len(xs) != len(ys):
                raise DataError(f"{where}: polygon has {len(xs)} x but {len(ys)} y coordinates")
            points = [(float(x), float(y)) for x, y in zip(xs, ys, strict=True)]
            if len(points) > 1 and points[0] == points[-1]:
                points = points[:-1]  # VIA often repeats the first vertex to close the ring
            return points
        if name == "rect":
            x, y, w, h = (float(shape[k]) for k in ("x", "y", "width", "height"))
            return [(x, y), (x + w, y), (x + w, y + h), (x, y + h)]
        if name == "circle":
            cx, cy, r = (float(shape[k]) for k in ("cx", "cy", "r"))
            return ellipse_polygon(cx, cy, r, r, 0.0, CURVE_VERTICES)
        if name == "ellipse":
            cx, cy, rx, ry = (float(shape[k]) for k in ("cx", "cy", "rx", "ry"))
            return ellipse_polygon(cx, cy, rx, ry, float(shape.get("theta", 0.0)), CURVE_VERTICES)
    except KeyError as err:
        raise DataError(f"{where}: {name} region without its {err.args[0]!r} points") from None
    except (TypeError, ValueError) as err:
        raise DataError(f"{where}: {name} region has non-numeric points ({err})") from None
    return None


# --- VIA parsing ----------------------------------------------------------------------
def load_via(via_json: str | Path) -> list[dict]:
    """Image entries of a VIA 1.x or 2.x file, in file order."""
    path = Path(via_json)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: VIA annotation file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not valid JSON ({err})") from None
    if isinstance(data, dict) and "_via_img_metadata" in data:
        data = data["_via_img_metadata"]  # VIA 2.x project file
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object of VIA image entries, got {type(data).__name__}")
    entries = []
    for key, entry in data.items():
        if not isinstance(entry, dict) or "filename" not in entry:
            raise DataError(f"{path}: entry {key!r} is not a VIA image entry (no 'filename')")
        entries.append({"key": key, **entry})
    return entries


def _regions(entry: dict, where: str) -> list[tuple[str, dict]]:
    regions = entry.get("regions") or []
    if isinstance(regions, dict):  # VIA 1.x: {"0": region, ...}
        items = list(regions.items())
    elif isinstance(regions, list):  # VIA 2.x
        items = [(str(i), r) for i, r in enumerate(regions)]
    else:
        raise DataError(f"{where}: 'regions' must be a list or an object")
    return items


def _class_of(region: dict, attribute: str, where: str) -> str:
    value = (region.get("region_attributes") or {}).get(attribute)
    if isinstance(value, dict):  # VIA 2.x checkbox attribute: {"balloon": true}
        chosen = [k for k, v in value.items() if v]
        if len(chosen) != 1:
            raise DataError(f"{where}: attribute {attribute!r} must select exactly one class, got {chosen}")
        value = chosen[0]
    if value is None or str(value).strip() == "":
        raise DataError(f"{where}: region has no value for class attribute {attribute!r}")
    return str(value).strip()


def via_to_coco(
    via_json: str | Path,
    image_dir: str | Path,
    class_attribute: str | None = None,
) -> dict:
    """Build a COCO detection dict from a VIA file and its image folder."""
    via_json, image_dir = Path(via_json), Path(image_dir)
    images, pending, skipped = [], [], {}
    for image_id, entry in enumerate(load_via(via_json), start=1):
        where = f"{via_json}: entry {entry['key']!r}"
        image_path = image_dir / entry["filename"]
        width, height = image_size(image_path, where)
        images.append({"id": image_id, "file_name": entry["filename"], "width": width, "height": height})
        for region_key, region in _regions(entry, where):
            rwhere = f"{where} region {region_key}"
            shape = region.get("shape_attributes") or {}
            points = shape_to_polygon(shape, rwhere)
            if points is None:
                name = shape.get("name", "<no name>")
                skipped.setdefault(name, []).append(rwhere)
                continue
            if len(points) < 3:
                raise DataError(f"{rwhere}: {shape['name']} needs at least 3 points, has {len(points)}")
            clipped = clip_polygon(points, width, height)
            area = polygon_area(clipped) if len(clipped) >= 3 else 0.0
            if area <= 0:
                raise DataError(f"{rwhere}: {shape['name']} has no area inside the {width}x{height} image")
            label = _class_of(region, class_attribute, rwhere) if class_attribute else DEFAULT_CLASS
            pending.append((image_id, label, clipped, area))
    for name, places in skipped.items():
        warnings.warn(
            f"{via_json}: skipped {len(places)} region(s) of unsupported shape {name!r} "
            f"(supported: {', '.join(SUPPORTED_SHAPES)}); first: {places[0]}",
            stacklevel=2,
        )

    names = sorted({label for _, label, _, _ in pending}) or [DEFAULT_CLASS]
    cat_ids = {name: i for i, name in enumerate(names, start=1)}
    annotations = []
    for ann_id, (image_id, label, poly, area) in enumerate(pending, start=1):
        annotations.append({
            "id": ann_id,
            "image_id": image_id,
            "category_id": cat_ids[label],
            "bbox": [round(v, 3) for v in polygon_bbox(poly)],
            "area": round(area, 3),
            "segmentation": [[round(c, 3) for p in poly for c in p]],
            "iscrowd": 0,
        })
    return {
        "info": {"description": f"converted from {via_json.name} by balloondet"},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i, "name": n} for n, i in cat_ids.items()],
    }


def convert(
    via_json: str | Path,
    image_dir: str | Path,
    out_json: str | Path,
    class_attribute: str | None = None,
) -> dict:
    """Convert a VIA file to COCO and write it atomically to ``out_json``; returns the dict."""
    coco = via_to_coco(via_json, image_dir, class_attribute)
    write_json_atomic(coco, out_json)
    return coco
