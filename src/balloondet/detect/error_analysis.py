"""Why the detector fails: TIDE's error types (Bolya et al., ECCV 2020), and scores per image.

``error_analysis`` (the `errors` verb) reads only what `test` wrote, ``WORK_DIR/test_detections.bbox.json``,
and the ground truth ``ROOT/SPLIT.json``. Like TIDE it takes every detection (the 100 best of each image,
which is all COCO's AP looks at), highest score first, matches them to the ground truth at IoU 0.5 and
explains each false positive:

- *duplicate*: IoU >= 0.5 with a box that a higher-scoring detection already matched;
- *localisation*: 0.1 <= IoU < 0.5 with the box of its class it overlaps most;
- *classification* (more than one class): IoU >= 0.5 with a box of another class;
- *both* (more than one class): 0.1 <= IoU < 0.5 with a box of another class, none of its own;
- *background*: IoU < 0.1 with every box;

and a box that no detection matched and no localisation error points at is *missed*. A detection matches
only a box of its own class (as COCO's AP does, per category). With one class, TIDE's class and "both"
errors cannot occur, and the analysis shows the four others.

The order of the tests is TIDE's (``TIDERun._eval_image`` in tidecv/quantify.py): localisation first, but
against the best-overlapping box only. So a detection that overlaps a matched box at >= 0.5 is a duplicate
even when it also covers an unmatched box at 0.1-0.5 (which then counts as missed, unless another
localisation error points at it), and one whose best overlap (0.1-0.5) is a matched box is a localisation
error that its fix suppresses. TIDE's range is 0.1 <= IoU <= 0.5; here an IoU of exactly 0.5 with a matched
box is a duplicate, as issue #21 defines it (an unmatched box at 0.5 is matched in both).

Each type's delta is the AP gained by fixing that type alone with TIDE's oracle (tidecv/errors/main_errors.py):

- localisation: the detection moves onto its box; where several point at one box only the highest-scoring
  one moves (TIDE's ``BestGTMatch``); the others, and those whose box is already matched, are suppressed;
- classification: the detection takes its box's class, where that box is free (else it is suppressed);
- duplicate, background, both: the detection is suppressed;
- missed: the box leaves the ground truth (TIDE lowers the number of positives).

AP50 and mAP (IoU 0.50:0.95) come from pycocotools, set up as `test`'s CocoMetric is
(``cocostats.coco_eval``), so the baseline is `test`'s mAP. A negative delta counts as 0, as in TIDE's
``fix_main_errors``: above IoU 0.5 a "duplicate" can be the better-placed box, and suppressing it costs mAP.

``image_scores`` counts true and false positives and missed boxes per image at the analysis threshold, as
`gt-vs-pred` does (``cocostats.match_detections``), with each image's AP50; ``worst_images`` (the `worst` verb)
draws the images with the most errors like `gt-vs-pred`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from balloondet.core import defaults
from balloondet.core.errors import DataError
from balloondet.core.files import display_path, load_json, write_json_atomic
from balloondet.core.images import save_figure
from balloondet.detect.cocostats import (
    category_names,
    check_detections,
    coco_eval,
    group_by_image,
    iou_xywh,
    map_of,
    match_detections,
    match_image,
    same_class,
)
from balloondet.detect.report import detections_file, draw_matches, split_images

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from pycocotools.cocoeval import COCOeval

ERROR_TYPES = ("localisation", "duplicate", "background", "missed")  # with one class
CLASS_ERROR_TYPES = ("classification", "localisation", "both", "duplicate", "background", "missed")  # with more
COUNT_KEYS = ("true_positive", *ERROR_TYPES)
TYPE_COLOURS = {"true_positive": "#1a9850", "localisation": "#fc8d59", "duplicate": "#91bfdb",
                "background": "#d73027", "missed": "#ffd92f", "classification": "#7b3294", "both": "#c2a5cf"}
MAX_DETS = 100  # detections per image that COCO's AP (maxDets 100) and TIDE (max_dets) look at
ERRORS_JSON = "errors.json"  # written into the work dir
PER_IMAGE_JSON = "per_image.json"
# what fixing each type means, for the "fix first" sentence ({n}: how many, {s}: the plural ending)
FIXES = {"localisation": "moving the {n} badly placed box{es} onto {their} {object}{s}",
         "duplicate": "suppressing the {n} duplicate box{es}",
         "background": "suppressing the {n} box{es} on background",
         "missed": "recovering the {n} missed {object}{s}",
         "classification": "relabelling the {n} box{es} that found an object of another class",
         "both": "suppressing the {n} misplaced box{es} of the wrong class"}


# --- inputs ---------------------------------------------------------------------------
def check_ground_truth(gt: Any, path: str | Path) -> dict:
    """``gt`` when it is COCO ground truth; else a ``DataError`` naming the file and entry."""
    if not isinstance(gt, dict):
        raise DataError(f"{path}: expected COCO ground truth (a dict with images, annotations, categories)")
    for key in ("images", "annotations", "categories"):
        if not isinstance(gt.get(key), list):
            raise DataError(f"{path}: no list of {key!r}; expected COCO ground truth (`balloondet data` writes it)")
    image_ids = {img.get("id") for img in gt["images"]}
    category_ids = {c.get("id") for c in gt["categories"]}
    for i, ann in enumerate(gt["annotations"]):
        if ann.get("image_id") not in image_ids:
            raise DataError(f"{path}: annotation {i} has image_id {ann.get('image_id')}, which no image has")
        if ann.get("category_id", next(iter(category_ids), None)) not in category_ids:
            raise DataError(f"{path}: annotation {i} has category_id {ann.get('category_id')}, which no category has")
        if len(ann.get("bbox") or []) != 4:
            raise DataError(f"{path}: annotation {i} has bbox {ann.get('bbox')}, not [x, y, w, h]")
    return gt


def load_inputs(work_dir: str | Path, data_root: str | Path, split: str) -> tuple[dict, list[dict], Path, Path]:
    """(ground truth, detections, ground-truth file, detections file), checked, with errors that name the file."""
    ann_file = Path(data_root) / f"{split}.json"
    det_file = detections_file(work_dir)
    gt = check_ground_truth(load_json(ann_file, f"COCO ground truth of the {split} split (`balloondet data`)"),
                            ann_file)
    dets = load_json(det_file, "detections in COCO results format (`balloondet test` writes them)")
    if not isinstance(dets, list):
        raise DataError(f"{det_file}: expected a list of detections (COCO results format)")
    return gt, check_detections(dets, gt, where=str(det_file)), ann_file, det_file


def top_detections(gt: dict, dets: list[dict], max_dets: int = MAX_DETS) -> list[dict]:
    """The ``max_dets`` highest-scoring detections of each image, in file order. Ties go to the earlier
    entry, as in pycocotools' stable sort: COCO's AP sees the same detections, so suppressing one in a fix
    cannot let the 101st of an image in."""
    kept = set()
    for image_dets in indices_by_image(gt, dets).values():
        kept.update(sorted(image_dets, key=lambda i: -dets[i]["score"])[:max_dets])
    return [d for i, d in enumerate(dets) if i in kept]


def indices_by_image(gt: dict, dets: list[dict]) -> dict[int, list[int]]:
    """The positions in ``dets`` of each image's detections, per image id of ``gt``."""
    groups: dict[int, list[int]] = {img["id"]: [] for img in gt["images"]}
    for i, det in enumerate(dets):
        groups[det["image_id"]].append(i)
    return groups


# --- TIDE's error types ---------------------------------------------------------------
@dataclass
class Errors:
    """Detections (by index into the detection list) and ground-truth boxes, by TIDE's type."""

    true_positive: list[int] = field(default_factory=list)
    # each localisation error -> the box its fix moves it onto, or None where the fix suppresses it
    localisation: dict[int, dict | None] = field(default_factory=dict)
    duplicate: list[int] = field(default_factory=list)
    background: list[int] = field(default_factory=list)
    missed: list[dict] = field(default_factory=list)  # ground-truth annotations
    # each classification error -> the box whose class its fix gives it, or None where the fix suppresses it
    classification: dict[int, dict | None] = field(default_factory=dict)
    both: list[int] = field(default_factory=list)

    def counts(self, types: tuple[str, ...] = ERROR_TYPES) -> dict[str, int]:
        """How many true positives and how many of each type."""
        return {key: len(getattr(self, key)) for key in ("true_positive", *types)}


def error_types(gt: dict) -> tuple[str, ...]:
    """The types that can occur: TIDE's class and "both" errors only where there is more than one class."""
    return CLASS_ERROR_TYPES if len(gt["categories"]) > 1 else ERROR_TYPES


def explain_false_positive(det: dict, gts: list[dict], fg_iou: float, bg_iou: float) -> tuple[str, dict | None]:
    """(TIDE's type, the box it concerns) of a detection the matching left unmatched, in TIDE's order:
    localisation (its own class), classification, duplicate, background, else both."""
    if not gts:
        return "background", None

    def best(boxes: list[dict]) -> tuple[float, dict | None]:
        ious = [iou_xywh(det["bbox"], g["bbox"]) for g in boxes]  # the first of equal overlaps, as TIDE's argmax
        return (0.0, None) if not boxes else max(zip(ious, boxes, strict=True), key=lambda p: p[0])

    own_iou, own = best([g for g in gts if same_class(det, g)])
    other_iou, other = best([g for g in gts if not same_class(det, g)])
    if bg_iou <= own_iou < fg_iou:
        return "localisation", own
    if other_iou >= fg_iou:
        return "classification", other
    if own_iou >= fg_iou:  # unmatched yet overlapping this much: a higher-scoring detection took the box
        return "duplicate", own
    if max(own_iou, other_iou) < bg_iou:
        return "background", None
    return "both", other


def classify(gt: dict, dets: list[dict], fg_iou: float = defaults.ERRORS_FG_IOU,
             bg_iou: float = defaults.ERRORS_BG_IOU) -> Errors:
    """Every detection and every box of ``gt`` by TIDE's type (one class; crowd boxes left out, as in
    ``match_image``)."""
    errors = Errors()
    anns = group_by_image(gt, gt["annotations"])
    for image_id, image_dets in indices_by_image(gt, dets).items():
        order = sorted(image_dets, key=lambda i: -dets[i]["score"])
        gts = [g for g in anns[image_id] if not g.get("iscrowd", 0)]
        hits, matched, _ = match_image(gts, [dets[i] for i in order], fg_iou)
        used, moved = {id(g) for g in matched}, set()  # boxes matched; boxes a localisation fix moves a box onto
        for i, hit in zip(order, hits, strict=True):
            kind, box = ("true_positive", None) if hit else explain_false_positive(dets[i], gts, fg_iou, bg_iou)
            if kind in ("localisation", "classification"):
                # TIDE's BestGTMatch: the best-scoring error of a free box is fixed, every other one suppressed
                fixable = id(box) not in used and id(box) not in moved
                getattr(errors, kind)[i] = box if fixable else None
                moved.add(id(box))
            else:
                getattr(errors, kind).append(i)
        errors.missed += [g for g in gts if id(g) not in used and id(g) not in moved]
    return errors


def fixed(gt: dict, dets: list[dict], errors: Errors, kind: str) -> tuple[dict, list[dict]]:
    """(ground truth, detections) with the errors of ``kind`` fixed by TIDE's oracle."""
    if kind == "missed":
        gone = {id(a) for a in errors.missed}
        return {**gt, "annotations": [a for a in gt["annotations"] if id(a) not in gone]}, dets
    if kind in ("localisation", "classification"):
        out = []
        for i, det in enumerate(dets):
            box = getattr(errors, kind).get(i, det)
            if box is None:
                continue
            if box is det:
                out.append(det)
            elif kind == "localisation":
                out.append({**det, "bbox": list(box["bbox"])})
            else:
                out.append({**det, "category_id": box["category_id"]})
        return gt, out
    suppressed = set(getattr(errors, kind))
    return gt, [d for i, d in enumerate(dets) if i not in suppressed]


# --- AP -------------------------------------------------------------------------------
def ap_at(ev: COCOeval, iou: float) -> float:
    """AP at IoU ``iou`` (all areas, 100 detections) from an accumulated COCOeval; nan without boxes."""
    import numpy as np

    t = int(np.argmin(np.abs(ev.params.iouThrs - iou)))
    if abs(ev.params.iouThrs[t] - iou) > 1e-6:
        raise DataError(f"IoU {iou} is not one of COCOeval's thresholds ({ev.params.iouThrs.tolist()})")
    p = ev.eval["precision"][t, :, :, ev.params.areaRngLbl.index("all"), ev.params.maxDets.index(100)]
    return float(p[p > -1].mean()) if (p > -1).any() else float("nan")


def ap_scores(gt: dict, dets: list[dict]) -> tuple[float, float]:
    """(AP50, mAP) of ``dets`` against ``gt`` with pycocotools, as `test` computes them."""
    ev = coco_eval(gt, dets, all_areas=False)
    return ap_at(ev, 0.5), map_of(ev)


def gain(fixed_ap: float, base_ap: float) -> float:
    """What a fix gained: never below 0 (TIDE's rule), and 0 where an AP is undefined (no box left)."""
    if math.isnan(fixed_ap) or math.isnan(base_ap):
        return 0.0
    return max(fixed_ap - base_ap, 0.0)


def finite_or_none(value: float) -> float | None:
    """``value``, or None (JSON's null) for nan."""
    return None if math.isnan(value) else value


def tide_errors(gt: dict, dets: list[dict], fg_iou: float = defaults.ERRORS_FG_IOU,
                bg_iou: float = defaults.ERRORS_BG_IOU) -> dict[str, Any]:
    """TIDE's counts and the AP50 and mAP that fixing each error type alone gains (see the module's doc).

    Returns ``{"fg_iou", "bg_iou", "classes", "types", "ap50", "map", "counts", "delta_ap50", "delta_map"}``;
    ``types`` are ``error_types(gt)``, the counts' keys ``true_positive`` and the types, the deltas' the types.
    """
    dets = top_detections(gt, dets)
    errors = classify(gt, dets, fg_iou, bg_iou)
    types = error_types(gt)
    base_ap50, base_map = ap_scores(gt, dets)
    delta_ap50, delta_map = {}, {}
    for kind in types:
        ap50, mean_ap = ap_scores(*fixed(gt, dets, errors, kind))
        delta_ap50[kind], delta_map[kind] = gain(ap50, base_ap50), gain(mean_ap, base_map)
    classes = category_names(gt)
    return {"fg_iou": fg_iou, "bg_iou": bg_iou, "classes": classes, "types": list(types),
            "ap50": finite_or_none(base_ap50), "map": finite_or_none(base_map), "counts": errors.counts(types),
            "delta_ap50": delta_ap50, "delta_map": delta_map}


def fix_first(result: dict[str, Any]) -> str:
    """One sentence: the error type whose fix gains the most mAP (ties: AP50), and what it gains."""
    best = max(result["types"], key=lambda k: (result["delta_map"][k], result["delta_ap50"][k]))
    d_map, d_ap50 = result["delta_map"][best], result["delta_ap50"][best]
    if d_map <= 0 and d_ap50 <= 0:
        return "Nothing to fix first: fixing no single error type would raise mAP or AP50."
    n = result["counts"][best]
    classes = result.get("classes") or ["object"]
    fix = FIXES[best].format(n=n, es="" if n == 1 else "es", s="" if n == 1 else "s", their="its" if n == 1 else
                             "their", object=classes[0] if len(classes) == 1 else "object")
    return (f"Fix {best} errors first: {fix} would raise mAP by {d_map:.3f} and AP50 by {d_ap50:.3f}, "
            f"the largest gain of the {len(result['types'])} error types.")


def errors_table(result: dict[str, Any]) -> str:
    """A Markdown table: each type's count and what fixing it gains."""
    rows = [f"| true positive | {result['counts']['true_positive']} | | |"]
    rows += [f"| {k} | {result['counts'][k]} | {result['delta_ap50'][k]:+.3f} | {result['delta_map'][k]:+.3f} |"
             for k in result["types"]]
    return "| detections / boxes | count | AP50 gained by fixing | mAP gained |\n|---|---|---|---|\n" + "\n".join(rows)


def plot_errors(result: dict[str, Any], title: str, out: str | Path | None) -> Figure:
    """Left: how many of each type; right: the AP50 and mAP that fixing each type alone gains."""
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (ax_n, ax_d) = plt.subplots(1, 2, figsize=(12, 4.2))
    keys = ("true_positive", *result["types"])
    bars = ax_n.bar([k.replace("_", " ") for k in keys], [result["counts"][k] for k in keys],
                    color=[TYPE_COLOURS[k] for k in keys])
    ax_n.bar_label(bars)
    ax_n.set(title="detections (and missed boxes) by type", ylabel="count")
    x = np.arange(len(result["types"]))
    for offset, key, label in ((-0.2, "delta_ap50", "AP50"), (0.2, "delta_map", "mAP")):
        bars = ax_d.bar(x + offset, [result[key][k] for k in result["types"]], width=0.4, label=label)
        ax_d.bar_label(bars, fmt="%.3f", fontsize=8)
    ax_d.set_xticks(x, result["types"])
    ax_d.set(title="gained by fixing only this type (TIDE's oracle)", ylabel="AP gained")
    ax_d.legend()
    for ax in (ax_n, ax_d):
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    return save_figure(fig, out, dpi=90)


def error_analysis(work_dir: str | Path, data_root: str | Path = defaults.DATA_ROOT, split: str = "val",
                   out: str | Path | None = f"{defaults.FIGURES_DIR}/{defaults.ERRORS_FIGURE}") -> dict[str, Any]:
    """TIDE's error types of `test`'s detections on ``split`` (``tide_errors``) with a "fix first" sentence,
    written to ``WORK_DIR/errors.json``, and their bar chart at ``out`` (None: not saved)."""
    gt, dets, ann_file, det_file = load_inputs(work_dir, data_root, split)
    result = tide_errors(gt, dets)
    result = {"split": split, "ground_truth": display_path(ann_file), "detections": display_path(det_file),
              **result, "fix_first": fix_first(result)}
    write_json_atomic(result, Path(work_dir) / ERRORS_JSON)
    ap50, mean_ap = (float("nan") if v is None else v for v in (result["ap50"], result["map"]))
    plot_errors(result, f"{split}: AP50 {ap50:.3f}, mAP {mean_ap:.3f}; where the rest is lost", out)
    return result


# --- per image ------------------------------------------------------------------------
def image_ap50(gt: dict, image: dict, anns: list[dict], dets: list[dict]) -> float | None:
    """COCO's AP50 of one image (all its detections); None for an image without boxes."""
    one = {**gt, "images": [image], "annotations": anns}
    return finite_or_none(ap_at(coco_eval(one, dets, all_areas=False), 0.5))


def per_image(gt: dict, dets: list[dict], score_thr: float = defaults.SCORE_THR,
              iou_thr: float = defaults.IOU_MATCH) -> list[dict[str, Any]]:
    """Per image of ``gt`` (in its order): true and false positives and missed boxes at ``score_thr``,
    matched one-to-one as `gt-vs-pred` counts them, their sum of errors, and the image's AP50."""
    anns, by_image = group_by_image(gt, gt["annotations"]), group_by_image(gt, dets)
    rows = []
    for m in match_detections(gt, dets, score_thr=score_thr, iou_thr=iou_thr):
        tp, fp, fn = m.counts
        rows.append({"image_id": m.image["id"], "file_name": m.image["file_name"], "tp": tp, "fp": fp, "fn": fn,
                     "errors": fp + fn, "ap50": image_ap50(gt, m.image, anns[m.image["id"]], by_image[m.image["id"]])})
    return rows


def image_scores(work_dir: str | Path, data_root: str | Path = defaults.DATA_ROOT, split: str = "val",
                 score_thr: float = defaults.SCORE_THR, iou_thr: float = defaults.IOU_MATCH) -> dict[str, Any]:
    """``per_image`` of `test`'s detections, written to ``WORK_DIR/per_image.json`` with the totals."""
    gt, dets, _, _ = load_inputs(work_dir, data_root, split)
    rows = per_image(gt, dets, score_thr, iou_thr)
    record = {"split": split, "score_thr": score_thr, "iou_thr": iou_thr, "images": rows,
              "totals": {key: sum(r[key] for r in rows) for key in ("tp", "fp", "fn")}}
    write_json_atomic(record, Path(work_dir) / PER_IMAGE_JSON)
    return record


def worst_first(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Images with errors, the most errors first (ties: lower AP50 first, then by file name)."""
    return sorted((r for r in rows if r["errors"]),
                  key=lambda r: (-r["errors"], r["ap50"] if r["ap50"] is not None else 2.0, r["file_name"]))


def per_image_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of ``per_image``'s rows."""
    def ap(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    lines = [f"| {Path(r['file_name']).stem[:32]} | {r['tp']} | {r['fp']} | {r['fn']} | {r['errors']} "
             f"| {ap(r['ap50'])} |" for r in rows]
    return "| image | TP | FP | missed | FP + missed | AP50 |\n|---|---|---|---|---|---|\n" + "\n".join(lines)


def worst_images(work_dir: str | Path, data_root: str | Path = defaults.DATA_ROOT, split: str = "val",
                 k: int = defaults.WORST_K, score_thr: float = defaults.SCORE_THR, iou_thr: float = defaults.IOU_MATCH,
                 out: str | Path | None = f"{defaults.FIGURES_DIR}/{defaults.WORST_FIGURE}",
                 cols: int = 3) -> tuple[Figure, list[dict[str, Any]]]:
    """The ``k`` images with the most errors (false positives + missed boxes at ``score_thr``), drawn as
    `gt-vs-pred` draws them; also writes ``WORK_DIR/per_image.json``. Returns (figure, their rows)."""
    if k < 1:
        raise DataError(f"worst: k must be at least 1, got {k}")
    record = image_scores(work_dir, data_root, split, score_thr, iou_thr)
    worst = worst_first(record["images"])[:k]
    gt, dets, ann_file, _ = load_inputs(work_dir, data_root, split)
    matches = {m.image["id"]: m for m in match_detections(gt, dets, score_thr=score_thr, iou_thr=iou_thr)}
    total = record["totals"]["fp"] + record["totals"]["fn"]
    title = (f"{split}: the {len(worst)} images with the most errors at score ≥ {score_thr} (IoU ≥ {iou_thr}): "
             f"{sum(r['errors'] for r in worst)} of the {total} false positives and missed boxes")
    fig = draw_matches([matches[r["image_id"]] for r in worst], split_images(ann_file), title,
                       cols=max(1, min(cols, len(worst))), gt=gt)
    return save_figure(fig, out, dpi=70), worst
