"""Small generated data sets of three classes in each format a user brings (COCO, VIA, YOLO, Pascal VOC).

Each image shows plain shapes on a grey ground: circles, squares and triangles (the classes), each in its
own colour, so a detector can learn them in a few epochs. ``Shapes`` draws them once; ``write_*`` lays
the same boxes out in a format's usual layout; tests then break one thing at a time.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw

CLASSES = ("circle", "square", "triangle")
COLOURS = {"circle": (220, 40, 40), "square": (40, 170, 60), "triangle": (40, 70, 220)}
SIZE = (96, 72)


@dataclass
class Shot:
    name: str
    boxes: list[tuple[str, tuple[int, int, int, int]]] = field(default_factory=list)  # (class, x, y, w, h)


def draw(path: Path, boxes, size=SIZE, mode="RGB") -> None:
    im = Image.new("RGB", size, (128, 128, 128))
    d = ImageDraw.Draw(im)
    for cls, (x, y, w, h) in boxes:
        x2, y2 = x + w - 1, y + h - 1
        if cls == "circle":
            d.ellipse([x, y, x2, y2], fill=COLOURS[cls])
        elif cls == "square":
            d.rectangle([x, y, x2, y2], fill=COLOURS[cls])
        else:
            d.polygon([(x, y2), (x2, y2), ((x + x2) / 2, y)], fill=COLOURS[cls])
    path.parent.mkdir(parents=True, exist_ok=True)
    (im.convert(mode) if mode != "RGB" else im).save(path, quality=95)


def shots(n: int, seed: int = 0, classes=CLASSES, prefix: str = "img", negatives: int = 0) -> list[Shot]:
    """``n`` images with one to three shapes each (every class appears), then ``negatives`` without any."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        shot = Shot(f"{prefix}{i:03d}.jpg")
        for k in range(1 + i % 3):
            cls = classes[(i + k) % len(classes)]
            w = h = rng.randint(16, 28)
            x, y = 4 + k * 30, rng.randint(2, SIZE[1] - h - 2)
            shot.boxes.append((cls, (x, y, w, h)))
        out.append(shot)
    out += [Shot(f"{prefix}_empty{j}.jpg") for j in range(negatives)]
    return out


def write_images(folder: Path, items: list[Shot]) -> None:
    for s in items:
        draw(folder / s.name, s.boxes)


# --- COCO -------------------------------------------------------------------------------
def coco_dict(items: list[Shot], cat_ids: dict[str, int]) -> dict:
    images, anns = [], []
    for i, s in enumerate(items, start=1):
        images.append({"id": i, "file_name": s.name, "width": SIZE[0], "height": SIZE[1]})
        for cls, box in s.boxes:
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": cat_ids[cls], "bbox": list(box),
                         "area": box[2] * box[3], "iscrowd": 0})
    return {"images": images, "annotations": anns,
            "categories": [{"id": i, "name": c} for c, i in cat_ids.items()]}


def write_coco(root: Path, splits: dict[str, list[Shot]], cat_ids: dict[str, int] | None = None) -> dict[str, dict]:
    """``root/{split}.json`` and ``root/{split}/`` images; returns the dicts (tests edit and rewrite them)."""
    cat_ids = cat_ids or {c: i for i, c in enumerate(CLASSES, start=1)}
    out = {}
    for split, items in splits.items():
        write_images(root / split, items)
        out[split] = coco_dict(items, cat_ids)
        (root / f"{split}.json").write_text(json.dumps(out[split]))
    return out


# --- YOLO -------------------------------------------------------------------------------
def yolo_lines(s: Shot, classes=CLASSES) -> str:
    rows = []
    for cls, (x, y, w, h) in s.boxes:
        rows.append(f"{classes.index(cls)} {(x + w / 2) / SIZE[0]:.6f} {(y + h / 2) / SIZE[1]:.6f} "
                    f"{w / SIZE[0]:.6f} {h / SIZE[1]:.6f}")
    return "\n".join(rows) + ("\n" if rows else "")


def write_yolo(root: Path, splits: dict[str, list[Shot]], classes=CLASSES, roboflow: bool = False) -> None:
    """Ultralytics' ``images/{split}`` + ``labels/{split}`` (Roboflow: ``{split}/images`` + ``{split}/labels``)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "data.yaml").write_text("names:\n" + "".join(f"  {i}: {c}\n" for i, c in enumerate(classes)))
    for split, items in splits.items():
        images, labels = (root / split / "images", root / split / "labels") if roboflow else \
            (root / "images" / split, root / "labels" / split)
        write_images(images, items)
        labels.mkdir(parents=True, exist_ok=True)
        for s in items:
            if s.boxes:
                (labels / f"{Path(s.name).stem}.txt").write_text(yolo_lines(s, classes))


# --- Pascal VOC ---------------------------------------------------------------------------
def voc_xml(s: Shot) -> str:
    objects = "".join(
        f"<object><name>{cls}</name><difficult>0</difficult><bndbox><xmin>{x + 1}</xmin><ymin>{y + 1}</ymin>"
        f"<xmax>{x + w}</xmax><ymax>{y + h}</ymax></bndbox></object>" for cls, (x, y, w, h) in s.boxes)
    return (f"<annotation><filename>{s.name}</filename><size><width>{SIZE[0]}</width><height>{SIZE[1]}</height>"
            f"<depth>3</depth></size>{objects}</annotation>")


def write_voc_flat(folder: Path, items: list[Shot]) -> None:
    """labelImg's way: every image and its XML side by side in one folder, no split."""
    write_images(folder, items)
    for s in items:
        (folder / f"{Path(s.name).stem}.xml").write_text(voc_xml(s))


# --- VIA ----------------------------------------------------------------------------------
def write_via(root: Path, splits: dict[str, list[Shot]], attribute: str = "shape") -> None:
    for split, items in splits.items():
        write_images(root / split, items)
        via = {}
        for s in items:
            regions = [{"shape_attributes": {"name": "rect", "x": x, "y": y, "width": w, "height": h},
                        "region_attributes": {attribute: cls}} for cls, (x, y, w, h) in s.boxes]
            via[f"{s.name}1"] = {"filename": s.name, "size": 1, "regions": regions, "file_attributes": {}}
        (root / split / "via_region_data.json").write_text(json.dumps(via))


def truncate(path: Path, keep: float = 0.5) -> None:
    """Cut a file short, as an interrupted copy does."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
