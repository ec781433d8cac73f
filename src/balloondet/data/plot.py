"""The dataset figure: a grid of images with their polygons and boxes."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from balloondet.core import defaults
from balloondet.core.errors import DataError
from balloondet.core.images import save_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure


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
            for seg in ann["segmentation"]:
                xy = list(zip(seg[0::2], seg[1::2], strict=True))
                ax.add_patch(Polygon(xy, closed=True, facecolor=(1, 0.2, 0.4, 0.35), edgecolor=(1, 0.2, 0.4), lw=1.5))
            x, y, w, h = ann["bbox"]
            ax.add_patch(Rectangle((x, y), w, h, fill=False, edgecolor="yellow", lw=1.5))
        ax.set_title(f"{img['file_name'][:22]}  ({len(anns)} balloon{'s' * (len(anns) != 1)})", fontsize=9)
    fig.suptitle(f"balloon {split}: {len(images)} images, {len(coco['annotations'])} labelled balloons "
                 f"(filled: polygon, yellow: box)", fontsize=12)
    fig.tight_layout()
    return save_figure(fig, out, dpi=80)
