"""The data set's figures: a grid of images with their polygons and boxes (``plot_dataset``), and the health
check's class balance, box sizes and box positions (``plot_health``)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from balloondet.core import defaults
from balloondet.core.classes import palette
from balloondet.core.errors import DataError
from balloondet.core.images import save_figure
from balloondet.data.health import BANDS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from balloondet.data.health import HealthReport


def plot_dataset(root: str | Path = defaults.DATA_ROOT, split: str = "train", n: int = 8,
                 out: str | Path | None = f"{defaults.FIGURES_DIR}/{defaults.DATASET_FIGURE}", cols: int = 4) -> Figure:
    """Draw ``n`` images of ``split`` (evenly spread over the set) with their labels.

    Polygons are filled, boxes outlined; the title counts images and boxes. Returns the
    matplotlib figure and saves it to ``out`` unless ``out`` is None.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Polygon, Rectangle
    from PIL import Image, ImageOps

    root = Path(root)
    if not (root / f"{split}.json").is_file():
        raise DataError(f"{root / f'{split}.json'} not found; convert the dataset first (`balloondet data`)")
    coco = json.loads((root / f"{split}.json").read_text())
    by_image = {img["id"]: [] for img in coco["images"]}
    for ann in coco["annotations"]:
        by_image[ann["image_id"]].append(ann)
    images = coco["images"]
    names = [c["name"] for c in sorted(coco["categories"], key=lambda c: c["id"])]
    colours = [tuple(v / 255 for v in c) for c in palette(len(names))]
    n = min(n, len(images))
    picks = [images[round(i * (len(images) - 1) / max(n - 1, 1))] for i in range(n)]
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img in zip(axes.flat, picks, strict=False):
        with Image.open(root / split / img["file_name"]) as im:
            ax.imshow(ImageOps.exif_transpose(im).convert("RGB"))
        anns = by_image[img["id"]]
        for ann in anns:
            colour = colours[ann["category_id"] - 1]
            for seg in ann.get("segmentation") or []:  # VIA polygons; YOLO and VOC bring boxes only
                xy = list(zip(seg[0::2], seg[1::2], strict=True))
                ax.add_patch(Polygon(xy, closed=True, facecolor=(*colour, 0.35), edgecolor=colour, lw=1.5))
            x, y, w, h = ann["bbox"]
            ax.add_patch(Rectangle((x, y), w, h, fill=False, lw=1.5,
                                   edgecolor="yellow" if len(names) == 1 else colour))
            if len(names) > 1:
                ax.text(x, y, names[ann["category_id"] - 1], color="white", fontsize=7, va="bottom",
                        bbox=dict(facecolor=colour, edgecolor="none", pad=1))
        what = f"{names[0]}{'s' * (len(anns) != 1)}" if len(names) == 1 else f"box{'es' * (len(anns) != 1)}"
        ax.set_title(f"{img['file_name'][:22]}  ({len(anns)} {what})", fontsize=9)
    labelled = f"labelled {names[0]}s" if len(names) == 1 else f"boxes of {len(names)} classes"
    legend = "(filled: polygon, yellow: box)" if len(names) == 1 else "(colour: class; filled: polygon where labelled)"
    fig.suptitle(f"{names[0] if len(names) == 1 else root.name} {split}: {len(images)} images, "
                 f"{len(coco['annotations'])} {labelled} {legend}", fontsize=12)
    fig.tight_layout()
    return save_figure(fig, out, dpi=80)


def plot_health(report: HealthReport, out: str | Path | None = None) -> Figure:
    """Three panels: boxes per class and split, box sizes against COCO's bands, where the boxes' centres lie."""
    import matplotlib.pyplot as plt
    import numpy as np

    classes, splits = report.classes, list(report.splits)
    colours = [tuple(v / 255 for v in c) for c in palette(len(classes))]
    fig, (bal, size, where) = plt.subplots(1, 3, figsize=(15, 4.2), gridspec_kw=dict(width_ratios=[1.2, 1.2, 1]))
    width = 0.8 / len(splits)
    x = np.arange(len(classes))
    for i, split in enumerate(splits):
        counts = report.splits[split]["per_class"]
        bars = bal.bar(x + (i - (len(splits) - 1) / 2) * width, counts, width, label=f"{split} "
                       f"({report.splits[split]['images']} images, {report.splits[split]['negatives']} without boxes)",
                       color=f"C{i}")
        bal.bar_label(bars, fontsize=8)
    bal.set_xticks(x, classes, rotation=30 if len(classes) > 4 else 0, ha="right" if len(classes) > 4 else "center")
    bal.set_ylabel("boxes")
    bal.set_title("class balance per split")
    bal.legend(fontsize=8)
    sides = {s: [np.sqrt(a) for _, _, a, _ in report.boxes[s]] for s in splits}
    top = max([max(v) for v in sides.values() if v] + [100])
    bins = np.geomspace(1, top * 1.05, 30)
    for i, split in enumerate(splits):
        size.hist(sides[split], bins=bins, alpha=0.6, label=split, color=f"C{i}")
    for _, lo, _ in BANDS[1:]:
        size.axvline(np.sqrt(lo), color="k", ls="--", lw=1)
    for band, lo, hi in BANDS:
        mid = np.sqrt(max(lo, 1) * min(hi, top ** 2)) ** 0.5
        size.text(mid, 0.97, band, transform=size.get_xaxis_transform(), ha="center", va="top", fontsize=9)
    size.set_xscale("log")
    size.set_xlabel("box size: √area in px of the original image")
    size.set_ylabel("boxes")
    size.set_title("box sizes against COCO's bands")
    size.legend(fontsize=8, loc="center right")
    for c, name in enumerate(classes):
        pts = np.array([(cx, cy) for s in splits for cx, cy, _, k in report.boxes[s] if k == c]).reshape(-1, 2)
        where.scatter(pts[:, 0], pts[:, 1], s=8, alpha=0.6, color=colours[c], label=name)
    where.set_xlim(0, 1)
    where.set_ylim(1, 0)  # image coordinates: y down
    where.set_aspect("equal")
    where.set_xlabel("box centre x / image width")
    where.set_ylabel("y / height")
    where.set_title("where the boxes lie (all splits)")
    if len(classes) > 1:
        where.legend(fontsize=8, markerscale=2)
    fig.suptitle(report.summary().removeprefix("health: "), fontsize=10)
    fig.tight_layout()
    return save_figure(fig, out, dpi=80)
