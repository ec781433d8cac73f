"""Results per class: each class's AP (CocoMetric's ``classwise`` table) and a confusion matrix.

``per_class_ap`` reads COCOeval's precision array per category, as mmdet's CocoMetric does for its
``classwise`` table. ``confusion_matrix`` counts every detection at the analysis' score threshold once:
first matched to a box of its own class as `gt-vs-pred` matches (the diagonal is its true positives),
then, among what is left of the image, to the unmatched box of any class it overlaps most at IoU >= the
threshold (a confusion), else into the background row (a false positive on nothing); a box that no
detection took is counted in the background column (missed). ``per_class`` (the `per-class` verb) writes
both to ``WORK_DIR/per_class.json`` and draws them.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from balloondet.core import defaults
from balloondet.core.files import write_json_atomic
from balloondet.core.images import save_figure
from balloondet.detect.cocostats import (
    category_index,
    category_names,
    coco_eval,
    group_by_image,
    iou_xywh,
    load_pair,
    match_image,
)
from balloondet.detect.report import detections_file

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.figure import Figure

PER_CLASS_JSON = "per_class.json"
BACKGROUND = "background"


def per_class_ap(gt: dict, dets: list[dict]) -> list[dict[str, Any]]:
    """Per class: its boxes, AP (IoU 0.50:0.95) and AP50 (all areas, 100 detections), None where it has no box."""
    import numpy as np

    ev = coco_eval(gt, dets, all_areas=False)
    precision = ev.eval["precision"][:, :, :, ev.params.areaRngLbl.index("all"), ev.params.maxDets.index(100)]
    t50 = int(np.argmin(np.abs(ev.params.iouThrs - 0.5)))
    boxes = {c["id"]: 0 for c in gt["categories"]}
    for ann in gt["annotations"]:
        boxes[ann["category_id"]] += not ann.get("iscrowd", 0)
    rows = []
    for k, cat_id in enumerate(ev.params.catIds):
        p = precision[:, :, k]
        name = next(c["name"] for c in gt["categories"] if c["id"] == cat_id)
        valid = p > -1
        rows.append({"class": name, "boxes": boxes[cat_id],
                     "ap": float(p[valid].mean()) if valid.any() else None,
                     "ap50": float(p[t50][valid[t50]].mean()) if valid[t50].any() else None})
    return rows


def confusion_matrix(gt: dict, dets: list[dict], score_thr: float = defaults.SCORE_THR,
                     iou_thr: float = defaults.IOU_MATCH) -> np.ndarray:
    """(K+1) x (K+1) counts: rows the true class (last: background), columns the predicted one (last:
    missed, i.e. background); see the module's doc for how each detection is counted once."""
    import numpy as np

    index = category_index(gt)
    bg = len(index)
    matrix = np.zeros((bg + 1, bg + 1), dtype=int)
    anns, by_image = group_by_image(gt, gt["annotations"]), group_by_image(gt, dets)
    for img in gt["images"]:
        kept = sorted((d for d in by_image[img["id"]] if d["score"] >= score_thr), key=lambda d: -d["score"])
        gts = [g for g in anns[img["id"]] if not g.get("iscrowd", 0)]
        hits, matched, missed = match_image(gts, kept, iou_thr)
        for g in matched:
            matrix[index[g["category_id"]], index[g["category_id"]]] += 1
        free = list(missed)
        for det in (d for d, hit in zip(kept, hits, strict=True) if not hit):
            ious = [iou_xywh(det["bbox"], g["bbox"]) for g in free]
            j = max(range(len(free)), key=ious.__getitem__) if free else None
            if j is not None and ious[j] >= iou_thr:
                matrix[index[free.pop(j)["category_id"]], index[det["category_id"]]] += 1
            else:
                matrix[bg, index[det["category_id"]]] += 1
        for g in free:
            matrix[index[g["category_id"]], bg] += 1
    return matrix


def ap_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of ``per_class_ap``'s rows."""
    def cell(v: float | None) -> str:
        return "-" if v is None else f"{v:.3f}"

    lines = [f"| {r['class']} | {r['boxes']} | {cell(r['ap'])} | {cell(r['ap50'])} |" for r in rows]
    return "| class | boxes | AP | AP50 |\n|---|---|---|---|\n" + "\n".join(lines)


def confusion_table(matrix: np.ndarray, classes: list[str]) -> str:
    """The confusion matrix as Markdown: true class down, predicted across."""
    names = [*classes, BACKGROUND]
    matrix = [list(row) for row in matrix]
    head = "| true \\ predicted | " + " | ".join(names) + " |\n|---|" + "---|" * len(names) + "\n"
    return head + "\n".join(f"| {names[i]} | " + " | ".join(str(v) for v in row) + " |" for i, row in enumerate(matrix))


def plot_per_class(rows: list[dict[str, Any]], matrix: np.ndarray, title: str, out: str | Path | None) -> Figure:
    """Left: AP and AP50 per class; right: the confusion matrix (counts, shaded by the share of its row)."""
    import matplotlib.pyplot as plt
    import numpy as np

    classes = [r["class"] for r in rows]
    fig, (ax_ap, ax_cm) = plt.subplots(1, 2, figsize=(6 + 0.9 * len(classes), 4.6),
                                       gridspec_kw=dict(width_ratios=[1, 1.1]))
    x = np.arange(len(classes))
    for offset, key, label in ((-0.2, "ap", "AP (0.50:0.95)"), (0.2, "ap50", "AP50")):
        bars = ax_ap.bar(x + offset, [r[key] or 0.0 for r in rows], width=0.4, label=label)
        ax_ap.bar_label(bars, fmt="%.2f", fontsize=8)
    ax_ap.set_xticks(x, [f"{r['class']}\n({r['boxes']} boxes)" for r in rows], fontsize=9)
    ax_ap.set(ylim=(0, 1.05), ylabel="AP", title="AP per class")
    ax_ap.legend(fontsize=8)
    names = [*classes, BACKGROUND]
    share = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    ax_cm.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i, j in np.ndindex(matrix.shape):
        if matrix[i, j] or i != j:
            ax_cm.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=10,
                       color="white" if share[i, j] > 0.6 else "black")
    ax_cm.set_xticks(range(len(names)), [*classes, "background\n(missed)"], fontsize=9)
    ax_cm.set_yticks(range(len(names)), [*classes, "background\n(false pos.)"], fontsize=9)
    ax_cm.set(xlabel="predicted", ylabel="true", title="confusion matrix")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return save_figure(fig, out, dpi=90)


def per_class(work_dir: str | Path, data_root: str | Path = defaults.DATA_ROOT, split: str = "val",
              score_thr: float = defaults.SCORE_THR, iou_thr: float = defaults.IOU_MATCH,
              out: str | Path | None = f"{defaults.FIGURES_DIR}/{defaults.PER_CLASS_FIGURE}") -> dict[str, Any]:
    """Per-class AP and the confusion matrix of `test`'s detections on ``split``; written to
    ``WORK_DIR/per_class.json``, drawn at ``out`` (None: not saved)."""
    gt, dets = load_pair(Path(data_root) / f"{split}.json", detections_file(work_dir))
    rows, matrix = per_class_ap(gt, dets), confusion_matrix(gt, dets, score_thr, iou_thr)
    classes = category_names(gt)
    record = {"split": split, "score_thr": score_thr, "iou_thr": iou_thr, "classes": classes, "ap": rows,
              "confusion": {"rows": [*classes, BACKGROUND], "columns": [*classes, BACKGROUND],
                            "counts": matrix.tolist()}}
    write_json_atomic(record, Path(work_dir) / PER_CLASS_JSON)
    plot_per_class(rows, matrix, f"{split}: per class (confusion at score ≥ {score_thr}, IoU ≥ {iou_thr}, each "
                                 "detection counted once)", out)
    return record
