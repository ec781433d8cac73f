"""Figures that explain the test result: ground truth against predictions on every val image,
precision-recall curves with a score-threshold sweep, and the boxes' sizes as the network sees them.

Each is a CLI verb of the same name (``gt-vs-pred``, ``pr-curves``, ``box-sizes``). The first two
read the detections that ``test`` writes (``WORK_DIR/test_detections.bbox.json``); the counting
and the statistics are in ``cocostats``.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from balloondet.core import defaults
from balloondet.core.errors import ConfigError, DataError
from balloondet.core.files import load_json
from balloondet.core.images import read_image, save_figure
from balloondet.detect.cocostats import (
    ImageMatch,
    category_index,
    category_names,
    coco_eval,
    load_pair,
    match_detections,
    pr_curve,
    threshold_sweep,
)

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.figure import Figure

DETECTIONS = "test_detections.bbox.json"  # what `test` writes into the work dir
# how each outcome is drawn: colour, line style, line width; the misses, mostly small balloons, in
# yellow with a dark outline, which stays visible on bright skies and on balloons of any colour
STYLES = {"true positive": ("#1a9850", "-", 2.0), "false positive": ("#d73027", "--", 2.0),
          "missed": ("#ffd92f", (0, (1.5, 1)), 3.0)}
COCO_BANDS = ((0, 32, "small"), (32, 96, "medium"), (96, float("inf"), "large"))  # √area thresholds, px


def detections_file(work_dir: str | Path) -> Path:
    """``WORK_DIR/test_detections.bbox.json``, or a clear error naming the step that writes it."""
    path = Path(work_dir) / DETECTIONS
    if not path.is_file():
        raise DataError(f"{path} not found: run `balloondet test CONFIG CHECKPOINT --work-dir {work_dir}` "
                        "(evaluate_checkpoint) first; it writes the val detections there")
    return path


def split_images(ann_file: str | Path) -> Path:
    """The image folder of a converted split: ``ROOT/val.json`` -> ``ROOT/val/``."""
    return Path(ann_file).with_suffix("")


# --- ground truth against predictions -------------------------------------------------
def gt_vs_pred(work_dir: str | Path, data_root: str | Path = defaults.DATA_ROOT, split: str = "val",
               score_thr: float = defaults.SCORE_THR, iou_thr: float = defaults.IOU_MATCH, cols: int = 4,
               out: str | Path | None = f"{defaults.FIGURES_DIR}/{defaults.GT_VS_PRED_FIGURE}") -> Figure:
    """Every image of ``split`` with its outcomes at ``score_thr``: true positives (solid), false
    positives (dashed), missed boxes (dotted); per-image counts in the titles."""
    ann_file = Path(data_root) / f"{split}.json"
    gt, dets = load_pair(ann_file, detections_file(work_dir))
    matches = match_detections(gt, dets, score_thr=score_thr, iou_thr=iou_thr)
    tp, fp, missed = (sum(m.counts[i] for m in matches) for i in range(3))
    classes = category_names(gt)
    boxes = f"{classes[0]}s" if len(classes) == 1 else f"boxes of {len(classes)} classes"
    title = (f"{split}: ground truth against predictions at score ≥ {score_thr} (IoU ≥ {iou_thr}, same class): "
             f"{tp} found, {fp} false, {missed} missed of {tp + missed} {boxes}")
    return save_figure(draw_matches(matches, split_images(ann_file), title, cols=cols, gt=gt), out, dpi=70)



def draw_matches(matches: list[ImageMatch], image_dir: str | Path, title: str, cols: int = 4,
                 gt: dict | None = None) -> Figure:
    """One panel per matched image (photo from ``image_dir``): true positives solid, false positives
    dashed, missed boxes dotted, the counts in each panel's title, a legend below and ``title`` above.
    With more than one class in ``gt`` (the ground truth), each box takes its class's colour and name.
    (``gt-vs-pred`` draws every image with it, ``worst`` the ones with the most errors.)"""
    import matplotlib.pyplot as plt
    from matplotlib import patheffects
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch, Rectangle

    from balloondet.core.classes import palette

    classes = category_names(gt) if gt else []
    by_class = len(classes) > 1
    ids = category_index(gt) if gt else {}
    class_colours = ["#%02x%02x%02x" % c for c in palette(len(classes))]

    def outlined(kind: str) -> list | None:
        width = STYLES[kind][2]
        return [patheffects.Stroke(linewidth=width + 1.5, foreground="#222222"),
                patheffects.Normal()] if kind == "missed" else None

    rows = max(1, (len(matches) + cols - 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.3 * rows + 0.8), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, m in zip(axes.flat, matches, strict=False):
        ax.imshow(read_image(Path(image_dir) / m.image["file_name"]))
        for kind, boxes in (("missed", m.missed), ("false positive", m.fp), ("true positive", m.tp)):
            color, style, width = STYLES[kind]
            for box in boxes:
                x, y, w, h = box["bbox"]
                k = ids.get(box.get("category_id"))
                colour = class_colours[k] if by_class and k is not None else color
                ax.add_patch(Rectangle((x, y), w, h, fill=False, edgecolor=colour, linestyle=style, lw=width,
                                     path_effects=outlined(kind)))
                label = " ".join(([classes[k]] if by_class and k is not None else [])
                                 + ([f"{box['score']:.2f}"] if "score" in box else []))
                if label:
                    ax.text(x, y, label, color="white", fontsize=6, va="bottom",
                            bbox=dict(facecolor=colour, edgecolor="none", pad=0.5))
        tp, fp, missed = m.counts
        ax.set_title(f"{Path(m.image['file_name']).stem[:24]}\nTP {tp} · FP {fp} · missed {missed}", fontsize=9)
    handles = [Line2D([], [], color="#444444" if by_class else c, linestyle=s, lw=w, label=k,
                      path_effects=outlined(k)) for k, (c, s, w) in STYLES.items()]
    if by_class:
        handles += [Patch(color=c, label=name) for c, name in zip(class_colours, classes, strict=True)]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False, fontsize=10)
    fig.suptitle(title, fontsize=12)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


# --- precision and recall -------------------------------------------------------------
def pr_curves(work_dir: str | Path, data_root: str | Path = defaults.DATA_ROOT, split: str = "val",
              score_thr: float = defaults.SCORE_THR,
              out: str | Path | None = f"{defaults.FIGURES_DIR}/{defaults.PR_FIGURE}") -> Figure:
    """Left: COCOeval's precision-recall curves at IoU 0.5 and 0.75. Right: precision, recall and F1
    of the detections kept at each score threshold (IoU 0.5), ``score_thr`` marked on both."""
    import matplotlib.pyplot as plt
    import numpy as np

    gt, dets = load_pair(Path(data_root) / f"{split}.json", detections_file(work_dir))
    ev = coco_eval(gt, dets)
    sweep = threshold_sweep(gt, dets, np.round(np.arange(0.0, 1.0001, 0.01), 2))
    at = int(np.argmin(np.abs(sweep["threshold"] - score_thr)))
    fig, (ax_pr, ax_thr) = plt.subplots(1, 2, figsize=(12, 4.6))
    for iou, style in ((0.5, "-"), (0.75, "--")):
        recall, precision, ap = pr_curve(ev, iou)
        ax_pr.plot(recall, precision, style, lw=1.8, label=f"IoU {iou}: AP {ap:.3f}")
    ax_pr.plot(sweep["recall"][at], sweep["precision"][at], "o", color="black", ms=7,
               label=f"score ≥ {score_thr} (IoU 0.5)")
    ax_pr.set(title="precision-recall (COCOeval, interpolated)", xlabel="recall", ylabel="precision",
              xlim=(0, 1.02), ylim=(0, 1.02))
    ax_pr.legend(loc="lower left")
    for key, color in (("precision", "tab:blue"), ("recall", "tab:orange"), ("f1", "tab:green")):
        ax_thr.plot(sweep["threshold"], sweep[key], color=color, lw=1.8, label=key if key != "f1" else "F1")
    ax_thr.axvline(score_thr, color="black", ls=":", lw=1.2)
    ax_thr.text(score_thr, 0.02, f" score_thr {score_thr}: P {sweep['precision'][at]:.2f}, "
                f"R {sweep['recall'][at]:.2f}, F1 {sweep['f1'][at]:.2f}", fontsize=9, va="bottom")
    ax_thr.set(title=f"keeping detections with score ≥ threshold ({int(sweep['n_gt'][0])} boxes, IoU 0.5)",
               xlabel="score threshold", xlim=(0, 1), ylim=(0, 1.02))
    ax_thr.legend(loc="upper right")
    for ax in (ax_pr, ax_thr):
        ax.grid(alpha=0.3)
    fig.suptitle(f"{split}: {len(gt['images'])} images, {len(dets)} detections", fontsize=12)
    fig.tight_layout()
    return save_figure(fig, out, dpi=90)


# --- box sizes ------------------------------------------------------------------------
def input_scale(config: str | Path) -> tuple[tuple[int, int], bool]:
    """(scale (w, h), keep_ratio) of the ``Resize`` in the config's test pipeline."""
    from balloondet.engine.config import build_config, innermost_dataset

    dataset = innermost_dataset(build_config(config).test_dataloader.dataset)
    resize = [t for t in dataset.get("pipeline", []) if t.get("type") == "Resize"]
    if not resize or "scale" not in resize[0]:
        raise ConfigError(f"{config}: test_dataloader's pipeline has no Resize with a scale; "
                          "box sizes at the network input need one")
    scale = resize[0]["scale"]
    scale = (scale, scale) if isinstance(scale, int) else tuple(scale)
    return scale, bool(resize[0].get("keep_ratio", False))


def sizes_at_input(coco: dict, scale: tuple[int, int], keep_ratio: bool) -> np.ndarray:
    """√(w·h) of every box after mmcv's Resize to ``scale`` (as the network sees it), in px."""
    import numpy as np

    images = {img["id"]: img for img in coco["images"]}
    sizes = []
    for ann in coco["annotations"]:
        img = images[ann["image_id"]]
        w, h = img["width"], img["height"]
        if keep_ratio:  # mmcv.rescale_size: the long side to the long edge, the short to the short, at most
            fx = fy = min(max(scale) / max(w, h), min(scale) / min(w, h))
        else:
            fx, fy = scale[0] / w, scale[1] / h
        sizes.append((ann["bbox"][2] * fx * ann["bbox"][3] * fy) ** 0.5)
    return np.asarray(sizes)


def band_counts(sizes: np.ndarray) -> dict[str, int]:
    """How many sizes fall in COCO's small (< 32), medium (32-96) and large (> 96) bands."""
    return {name: int(((sizes >= lo) & (sizes < hi)).sum()) for lo, hi, name in COCO_BANDS}


def box_sizes(config: str | Path, data_root: str | Path = defaults.DATA_ROOT,
              out: str | Path | None = f"{defaults.FIGURES_DIR}/{defaults.BOX_SIZES_FIGURE}") -> Figure:
    """Box sizes of train and val at the network input (the test pipeline's Resize) and in the original
    images (COCO's ``area``, which decides AP_small/medium/large), over COCO's size bands."""
    import matplotlib.pyplot as plt
    import numpy as np

    scale, keep_ratio = input_scale(config)
    cocos = {split: load_json(Path(data_root) / f"{split}.json", f"the converted {split} split (`balloondet data`)")
             for split in ("train", "val")}
    panels: list[tuple[str, dict[str, Any]]] = [
        (f"at the network input ({scale[0]}×{scale[1]}{', ratio kept' if keep_ratio else ''}): √(w·h) in px",
         {s: sizes_at_input(c, scale, keep_ratio) for s, c in cocos.items()}),
        ("in the original images: √area, which COCO's AP_s/m/l use",
         {s: np.sqrt([a["area"] for a in c["annotations"]]) for s, c in cocos.items()}),
    ]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2))
    band_colors = {"small": "#fee0d2", "medium": "#deebf7", "large": "#e5f5e0"}
    for ax, (title, sizes) in zip(axes, panels, strict=True):
        every = np.concatenate([v for v in sizes.values() if v.size])
        if not every.size:
            raise DataError(f"{data_root}: no annotations to measure")
        bins = np.geomspace(max(every.min() * 0.9, 1), every.max() * 1.1, 30)
        for lo, hi, name in COCO_BANDS:
            ax.axvspan(max(lo, bins[0]), min(hi, bins[-1]), color=band_colors[name], zorder=0)
            if lo < bins[-1] and hi > bins[0]:
                ax.text((max(lo, bins[0]) * min(hi, bins[-1])) ** 0.5, 1.0, name, transform=ax.get_xaxis_transform(),
                        ha="center", va="bottom", fontsize=9)
        for split, color in (("train", "tab:blue"), ("val", "tab:orange")):
            counts = band_counts(sizes[split])
            label = f"{split} ({len(sizes[split])}): " + ", ".join(f"{v} {k}" for k, v in counts.items())
            ax.hist(sizes[split], bins=bins, histtype="step", lw=1.8, color=color, label=label)
        ax.set_xscale("log")
        ax.set(xlabel="box size (px, log scale)", ylabel="boxes")
        ax.set_title(title, fontsize=10, pad=16)
        ax.legend(loc="upper left", fontsize=8)
    fig.suptitle("balloon sizes against COCO's small (< 32²), medium and large (> 96²) bands", fontsize=12)
    fig.tight_layout()
    return save_figure(fig, out, dpi=90)
