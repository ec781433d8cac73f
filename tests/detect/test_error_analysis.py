"""`errors` (TIDE's error types), per-image scores, `worst` and `test --tta`.

The hand-made cases know each detection's type and its IoU with the box it finds; the expected APs come
from ``reference_ap``, COCO's 101-point AP written out plainly, not from pycocotools or the package.
"""
import json
import re

import numpy as np
import pytest

from balloondet.core.errors import DataError
from balloondet.detect.cocostats import coco_eval, map_of, match_detections
from balloondet.detect.error_analysis import (
    COUNT_KEYS,
    ERROR_TYPES,
    classify,
    fix_first,
    per_image,
    tide_errors,
    worst_first,
)

THRESHOLDS = np.linspace(0.5, 0.95, 10)


def box(n, image_id, bbox):
    return {"id": n, "image_id": image_id, "category_id": 1, "bbox": bbox, "area": bbox[2] * bbox[3], "iscrowd": 0}


def det(bbox, score, image_id=1):
    return {"image_id": image_id, "category_id": 1, "bbox": bbox, "score": score}


def coco(boxes, n_images=1):
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 400, "height": 400} for i in range(1, n_images + 1)]
    anns = [box(n, image_id, b) for n, (image_id, b) in enumerate(boxes, start=1)]
    return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "balloon"}]}


def reference_ap(ious, n_gt, t):
    """COCO's AP at IoU ``t`` of detections in score order, each a true positive iff its IoU with the box
    it alone can find is >= t: precision made monotone from the right, read at recall 0, 0.01, ..., 1."""
    hits = np.array([iou >= t - 1e-12 for iou in ious], dtype=bool)
    tp, fp = np.cumsum(hits), np.cumsum(~hits)
    recall, precision = tp / n_gt, tp / np.maximum(tp + fp, 1)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    points = [envelope[np.argmax(recall >= r)] if (recall >= r).any() else 0.0 for r in np.linspace(0, 1, 101)]
    return float(np.mean(points))


def reference_scores(ious, n_gt):
    """(AP50, mAP) by ``reference_ap``."""
    return reference_ap(ious, n_gt, 0.5), float(np.mean([reference_ap(ious, n_gt, t) for t in THRESHOLDS]))


A, B, C, D = [0, 0, 10, 10], [50, 50, 10, 10], [100, 100, 10, 10], [150, 150, 10, 10]
D_IOU = 81 / 119  # [151, 151, 10, 10] against D


@pytest.fixture
def every_type():
    """One of each type: A found and found again, B badly placed, a box on nothing, C missed, D found."""
    gt = coco([(1, A), (1, B), (1, C), (1, D)])
    dets = [det(A, 0.9),                 # true positive (IoU 1)
            det([1, 0, 10, 10], 0.8),    # IoU 90/110 with A, which the 0.9 box took: duplicate
            det([55, 55, 10, 10], 0.7),  # IoU 25/175 = 0.14 with B: localisation
            det([300, 300, 10, 10], 0.6),  # background
            det([151, 151, 10, 10], 0.5)]  # true positive at IoU 0.68: false at IoU >= 0.7
    return gt, dets


def test_every_type_is_counted_and_each_fix_gains_what_the_definition_says(every_type):
    gt, dets = every_type
    result = tide_errors(gt, dets)
    assert result["counts"] == {"true_positive": 2, "localisation": 1, "duplicate": 1, "background": 1, "missed": 1}
    base = reference_scores([1, 0, 0, 0, D_IOU], 4)
    assert (result["ap50"], result["map"]) == pytest.approx(base, abs=1e-9)
    assert result["map"] == pytest.approx(map_of(coco_eval(gt, dets)), abs=1e-12)  # what `test` reports
    fixed = {"localisation": reference_scores([1, 0, 1, 0, D_IOU], 4),  # the 0.7 box moved onto B
             "duplicate": reference_scores([1, 0, 0, D_IOU], 4),  # the 0.8 box gone
             "background": reference_scores([1, 0, 0, D_IOU], 4),  # the 0.6 box gone
             "missed": reference_scores([1, 0, 0, 0, D_IOU], 3)}  # C no longer counted
    for kind, (ap50, mean_ap) in fixed.items():
        assert result["delta_ap50"][kind] == pytest.approx(ap50 - base[0], abs=1e-9), kind
        assert result["delta_map"][kind] == pytest.approx(mean_ap - base[1], abs=1e-9), kind
        assert result["delta_ap50"][kind] > 0
    assert set(result["delta_ap50"]) == set(result["delta_map"]) == set(ERROR_TYPES)


def test_a_box_over_a_matched_and_an_unmatched_box_is_a_duplicate_as_in_tide():
    """TIDE tests localisation first, but against the best-overlapping box only: overlapping the matched
    box at >= 0.5 makes a duplicate, though the box also covers the unmatched one at 0.33, which stays missed."""
    gt = coco([(1, [0, 0, 20, 20]), (1, [12, 0, 20, 20])])
    dets = [det([0, 0, 20, 20], 0.9), det([2, 0, 20, 20], 0.8)]  # IoU 0.82 with the first box, 0.33 with the other
    errors = classify(gt, dets)
    assert errors.counts() == {"true_positive": 1, "localisation": 0, "duplicate": 1, "background": 0, "missed": 1}
    assert errors.duplicate == [1] and errors.missed[0]["bbox"] == [12, 0, 20, 20]
    # the other way round: its best overlap (0.25) is the unmatched box, 0.05 the matched one: localisation
    gt = coco([(1, [0, 0, 20, 20]), (1, [30, 0, 20, 20])])
    errors = classify(gt, [det([0, 0, 20, 20], 0.9), det([18, 0, 20, 20], 0.8)])
    assert errors.counts() == {"true_positive": 1, "localisation": 1, "duplicate": 0, "background": 0, "missed": 0}
    assert errors.localisation[1]["bbox"] == [30, 0, 20, 20]  # its fix moves it there


def test_a_badly_placed_box_on_a_matched_box_is_suppressed_not_moved():
    gt = coco([(1, [0, 0, 20, 20]), (1, [100, 100, 10, 10])])
    dets = [det([0, 0, 20, 20], 0.9), det([10, 0, 20, 20], 0.8), det([100, 100, 10, 10], 0.7)]  # IoU 1/3, matched
    result = tide_errors(gt, dets)
    assert result["counts"]["localisation"] == 1 and result["counts"]["missed"] == 0
    base_ap50 = reference_ap([1, 0, 1], 2, 0.5)
    assert result["delta_ap50"]["localisation"] == pytest.approx(reference_ap([1, 1], 2, 0.5) - base_ap50, abs=1e-9)
    assert result["ap50"] + result["delta_ap50"]["localisation"] == pytest.approx(1.0)  # moved, it would be a duplicate


def test_of_two_badly_placed_boxes_on_one_box_the_better_scored_moves():
    gt = coco([(1, [0, 0, 20, 20]), (1, [100, 100, 10, 10]), (1, [200, 200, 10, 10])])
    dets = [det([100, 100, 10, 10], 0.9), det([10, 0, 20, 20], 0.8), det([0, 10, 20, 20], 0.7),
            det([200, 200, 10, 10], 0.6)]  # the middle two at IoU 1/3 with the first box
    errors = classify(gt, dets)
    assert errors.localisation == {1: gt["annotations"][0], 2: None} and errors.missed == []
    result = tide_errors(gt, dets)
    base = reference_ap([1, 0, 0, 1], 3, 0.5)
    assert result["ap50"] == pytest.approx(base, abs=1e-9)
    # the 0.8 box moved onto the first box, the 0.7 one suppressed: three hits in a row (had both moved,
    # the second would be a false positive before the last hit)
    assert result["delta_ap50"]["localisation"] == pytest.approx(1.0 - base, abs=1e-9)


def test_fixes_that_cannot_raise_ap_gain_nothing():
    """No duplicates and no badly placed boxes: 0; a background box scored below every true positive: 0 too."""
    gt = coco([(1, A), (1, B), (1, C)])
    dets = [det(A, 0.9), det(B, 0.8), det([300, 300, 10, 10], 0.1)]  # C missed
    result = tide_errors(gt, dets)
    assert result["counts"] == {"true_positive": 2, "localisation": 0, "duplicate": 0, "background": 1, "missed": 1}
    for kind in ("localisation", "duplicate", "background"):
        assert result["delta_ap50"][kind] == 0 and result["delta_map"][kind] == 0, kind
    assert result["delta_ap50"]["missed"] == pytest.approx(1 - reference_ap([1, 1, 0], 3, 0.5), abs=1e-9)
    assert "missed" in fix_first(result) and "1 missed balloon " in fix_first(result)


def test_a_fix_that_costs_map_counts_as_zero_as_in_tide():
    """The duplicate is the better-placed box: suppressing it costs mAP from IoU 0.65 up."""
    gt = coco([(1, [0, 0, 100, 100])])
    dets = [det([0, 0, 100, 62], 0.9), det([0, 0, 100, 95], 0.8)]  # IoU 0.62 and 0.95
    result = tide_errors(gt, dets)
    assert result["counts"]["duplicate"] == 1
    # IoU 0.5-0.6: the first box finds it (AP 1); 0.65-0.95: only the second does, after a false positive (AP 0.5)
    assert result["map"] == pytest.approx((3 * 1 + 7 * 0.5) / 10, abs=1e-9)
    assert reference_scores([0.62], 1)[1] == pytest.approx(0.3)  # the second suppressed: AP 0 from 0.65 up
    assert result["delta_map"]["duplicate"] == 0 and result["delta_ap50"]["duplicate"] == 0


def random_case(n_images, seed):
    """Images with 0-4 boxes, found roughly, found twice, missed, and noise."""
    rng = np.random.default_rng(seed)
    boxes, dets = [], []
    for i in range(1, n_images + 1):
        for _ in range(rng.integers(0, 5)):
            b = [*rng.uniform(0, 300, 2), *rng.uniform(15, 90, 2)]
            boxes.append((i, b))
            for _ in range(rng.choice([0, 1, 1, 2])):
                jitter = rng.normal(0, 0.25, 4) * [b[2], b[3], b[2], b[3]]
                dets.append(det([b[0] + jitter[0], b[1] + jitter[1], abs(b[2] + jitter[2]) + 1,
                                 abs(b[3] + jitter[3]) + 1], float(rng.uniform(0.05, 1)), i))
        for _ in range(rng.integers(0, 3)):
            dets.append(det([*rng.uniform(0, 350, 2), 30, 30], float(rng.uniform(0, 0.9)), i))
    return coco(boxes, n_images), dets


def test_counts_agree_with_cocoeval_and_account_for_every_detection_and_box():
    gt, dets = random_case(30, seed=3)
    result = tide_errors(gt, dets)
    counts = result["counts"]
    ev = coco_eval(gt, dets, all_areas=False)
    matched_at_50 = sum(int((e["dtMatches"][0] > 0).sum()) for e in ev.evalImgs if e is not None)
    assert counts["true_positive"] == matched_at_50
    assert sum(counts[k] for k in ("true_positive", "localisation", "duplicate", "background")) == len(dets)
    errors = classify(gt, dets)
    fixable = sum(b is not None for b in errors.localisation.values())
    assert counts["true_positive"] + fixable + counts["missed"] == len(gt["annotations"])
    assert min(counts.values()) > 0 and set(counts) == set(COUNT_KEYS)
    assert result["map"] == pytest.approx(map_of(ev), abs=1e-12)


def test_only_the_100_best_detections_of_an_image_count():
    gt = coco([(1, A)])
    dets = [det(A, 0.01)] + [det([300, 300, 10, 10], 0.5 + i / 1000) for i in range(100)]  # A's box is the 101st
    result = tide_errors(gt, dets)
    assert result["counts"] == {"true_positive": 0, "localisation": 0, "duplicate": 0, "background": 100,
                                "missed": 1}
    assert result["map"] == 0 and result["delta_ap50"]["background"] == 0  # suppressing them lets no 101st in


def test_fix_first_names_the_largest_gain(every_type):
    result = tide_errors(*every_type)
    best = max(ERROR_TYPES, key=lambda k: result["delta_map"][k])
    sentence = fix_first(result)
    assert sentence.startswith(f"Fix {best} errors first") and f"{result['delta_map'][best]:.3f}" in sentence
    nothing = {**result, "delta_ap50": dict.fromkeys(ERROR_TYPES, 0.0), "delta_map": dict.fromkeys(ERROR_TYPES, 0.0)}
    assert fix_first(nothing).startswith("Nothing to fix")


# --- per image ------------------------------------------------------------------------
def test_per_image_counts_add_up_to_gt_vs_pred_and_ap50_is_the_image_s(every_type):
    gt, dets = random_case(12, seed=5)
    rows = per_image(gt, dets, score_thr=0.3)
    matches = match_detections(gt, dets, score_thr=0.3)
    assert [(r["tp"], r["fp"], r["fn"]) for r in rows] == [m.counts for m in matches]
    totals = [sum(r[k] for r in rows) for k in ("tp", "fp", "fn")]
    assert totals == [sum(m.counts[i] for m in matches) for i in range(3)] and min(totals) > 0
    assert all(r["errors"] == r["fp"] + r["fn"] for r in rows)
    gt, dets = every_type
    (row,) = per_image(gt, dets, score_thr=0.3)
    assert (row["tp"], row["fp"], row["fn"]) == (2, 3, 2)  # D found at 0.68; B and C missed
    assert row["ap50"] == pytest.approx(reference_ap([1, 0, 0, 0, D_IOU], 4, 0.5), abs=1e-9)
    empty = coco([], n_images=1)
    assert per_image(empty, [det(A, 0.9)])[0]["ap50"] is None  # no box, no AP


def test_worst_first_orders_by_errors_then_ap50():
    rows = [{"file_name": n, "errors": e, "ap50": ap} for n, e, ap in
            (("a", 1, 0.5), ("b", 3, 0.9), ("c", 0, 1.0), ("d", 3, 0.2), ("e", 1, None))]
    assert [r["file_name"] for r in worst_first(rows)] == ["d", "b", "a", "e"]


# --- files, figures and the CLI -------------------------------------------------------
@pytest.fixture
def tested_work_dir(synthetic_root, tmp_path):
    """A work dir as `test` leaves it, with made-up detections of the synthetic val split."""
    gt = json.loads((synthetic_root / "val.json").read_text())
    rng = np.random.default_rng(2)
    dets = []
    for k, ann in enumerate(gt["annotations"]):
        x, y, w, h = ann["bbox"]
        if k % 4 == 3:
            dets.append(det([x + 0.6 * w, y, w, h], 0.7, ann["image_id"]))  # badly placed
        else:
            dets.append(det([x + 0.05 * w, y, w, h], float(rng.uniform(0.4, 1)), ann["image_id"]))
        if k % 5 == 0:
            dets.append(det([x, y + 0.1 * h, w, h], 0.35, ann["image_id"]))  # found twice
    dets.append(det([1, 1, 30, 30], 0.9, gt["images"][0]["id"]))  # on nothing
    (tmp_path / "test_detections.bbox.json").write_text(json.dumps(dets))
    return tmp_path, gt, dets


def test_errors_writes_its_json_and_figure(tested_work_dir, synthetic_root, tmp_path):
    from balloondet.detect.error_analysis import error_analysis

    work_dir, gt, dets = tested_work_dir
    result = error_analysis(work_dir, synthetic_root, out=tmp_path / "errors.png")
    saved = json.loads((work_dir / "errors.json").read_text())
    assert saved == json.loads(json.dumps(result))
    assert set(saved["counts"]) == set(COUNT_KEYS) and set(saved["delta_map"]) == set(ERROR_TYPES)
    assert saved["map"] == pytest.approx(map_of(coco_eval(gt, dets)), abs=1e-12)
    assert saved["counts"]["localisation"] > 0 and saved["counts"]["duplicate"] > 0
    assert saved["fix_first"] == fix_first(saved) and (tmp_path / "errors.png").stat().st_size > 10_000


def test_worst_draws_the_images_with_most_errors_like_gt_vs_pred(tested_work_dir, synthetic_root, tmp_path):
    from balloondet.detect.error_analysis import worst_images

    work_dir, gt, dets = tested_work_dir
    fig, worst = worst_images(work_dir, synthetic_root, k=2, out=tmp_path / "worst.jpg")
    saved = json.loads((work_dir / "per_image.json").read_text())
    matches = match_detections(gt, dets)
    assert [saved["totals"][k] for k in ("tp", "fp", "fn")] == [sum(m.counts[i] for m in matches) for i in range(3)]
    errors = sorted((r["errors"] for r in saved["images"]), reverse=True)
    assert [r["errors"] for r in worst] == errors[:2] and (tmp_path / "worst.jpg").is_file()
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert [tuple(int(n) for n in re.findall(r"(?:TP|FP|missed) (\d+)", t)) for t in titles] == \
        [(r["tp"], r["fp"], r["fn"]) for r in worst]


def test_cli_errors_and_worst(tested_work_dir, synthetic_root, tmp_path, capsys):
    from balloondet.cli import main

    work_dir, _, _ = tested_work_dir
    assert main(["errors", str(work_dir), "--data-root", str(synthetic_root), "--out", str(tmp_path / "e.png")]) == 0
    out = capsys.readouterr().out
    assert "| localisation |" in out and json.loads((work_dir / "errors.json").read_text())["fix_first"] in out
    assert (work_dir / "per_image.json").is_file()
    assert main(["worst", str(work_dir), "--data-root", str(synthetic_root), "--k", "3",
                 "--out", str(tmp_path / "w.jpg")]) == 0
    assert capsys.readouterr().out.count("\n|") >= 4 and (tmp_path / "w.jpg").is_file()  # header, rule, 3 rows


@pytest.mark.parametrize("content, message", [
    (None, r"test_detections\.bbox\.json not found.*balloondet test"),
    ("{not json", r"test_detections\.bbox\.json: not valid JSON"),
    ('{"bbox": [1, 2, 3, 4]}', r"test_detections\.bbox\.json: expected a list"),
    ('[{"image_id": 1, "bbox": [1, 2, 3, 4]}]', r"test_detections\.bbox\.json: entry 0 lacks score"),
])
def test_bad_detection_files_are_named(content, message, synthetic_root, tmp_path):
    from balloondet.detect.error_analysis import error_analysis, worst_images

    if content is not None:
        (tmp_path / "test_detections.bbox.json").write_text(content)
    for step in (error_analysis, worst_images):
        with pytest.raises(DataError, match=message):
            step(tmp_path, synthetic_root, out=None)


@pytest.mark.parametrize("content, message", [
    (None, r"not found: .*val\.json"),
    ("[]", r"val\.json: expected COCO ground truth"),
    ('{"images": [], "categories": []}', r"val\.json: no list of 'annotations'"),
    ('{"images": [{"id": 1}], "annotations": [{"image_id": 1, "category_id": 3, "bbox": [1, 2, 3, 4]}], '
     '"categories": [{"id": 1}, {"id": 2}]}', r"val\.json: annotation 0 has category_id 3, which no category has"),
    ('{"images": [{"id": 1}], "annotations": [{"image_id": 1, "bbox": [1, 2]}], "categories": [{"id": 1}]}',
     r"val\.json: annotation 0 has bbox \[1, 2\]"),
])
def test_bad_ground_truth_is_named(content, message, tmp_path):
    from balloondet.detect.error_analysis import error_analysis

    root = tmp_path / "root"
    root.mkdir()
    if content is not None:
        (root / "val.json").write_text(content)
    (tmp_path / "test_detections.bbox.json").write_text("[]")
    with pytest.raises(DataError, match=message):
        error_analysis(tmp_path, root, out=None)


# --- test-time augmentation -----------------------------------------------------------
def test_tta_config_wraps_the_model_and_scales_rtmdet_s_views():
    from balloondet.engine.config import build_config
    from balloondet.engine.tta import tta_scales, use_tta

    assert tta_scales((640, 640)) == [(640, 640), (320, 320), (960, 960)]  # rtmdet_tta.py's own
    cfg = build_config("rtmdet_tiny_smoke_synthetic")
    detector = cfg.model.to_dict()
    use_tta(cfg)
    assert cfg.model.type == "DetTTAModel" and cfg.model.module.to_dict() == detector
    assert cfg.model.tta_cfg.nms.iou_threshold == 0.6 and cfg.model.tta_cfg.max_per_img == 100
    load, aug = cfg.test_dataloader.dataset.pipeline
    assert load.type == "LoadImageFromFile" and aug.type == "TestTimeAug"
    assert [t.scale for t in aug.transforms[0]] == [(192, 192), (96, 96), (288, 288)]
    assert [t.prob for t in aug.transforms[1]] == [1.0, 0.0]


@pytest.mark.train
def test_tta_runs_on_the_smoke_model(trained_smoke, synthetic_root, tmp_path):
    from balloondet.detect.error_analysis import error_analysis
    from balloondet.detect.test import evaluate_checkpoint

    metrics, seconds = {}, {}
    for flag in (False, True):
        metrics[flag] = evaluate_checkpoint(trained_smoke["config"], trained_smoke["checkpoint"],
                                            work_dir=tmp_path / str(flag), device="cpu", data_root=synthetic_root,
                                            precision="auto", quiet=True, bootstrap=0, tta=flag)
        record = json.loads((tmp_path / str(flag) / "test_metrics.json").read_text())
        assert record["tta"] is flag and record["device"] == "cpu"
        seconds[flag] = record["seconds_per_image"]
    assert 0 < seconds[False] < 0.6 * seconds[True]  # six views (three scales, each flipped) cost more than one
    dets = {flag: json.loads((tmp_path / str(flag) / "test_detections.bbox.json").read_text()) for flag in metrics}
    assert dets[True] != dets[False]
    assert np.bincount([d["image_id"] for d in dets[True]]).max() <= 100  # DetTTAModel's max_per_img (else 300)
    # views mapped back wrongly (scale or flip) would lose most boxes; merged right, they keep the plain AP's order
    assert metrics[True]["coco/bbox_mAP_50"] > 0.5 * metrics[False]["coco/bbox_mAP_50"] > 0
    assert error_analysis(tmp_path / "True", synthetic_root, out=None)["map"] == \
        pytest.approx(metrics[True]["coco/bbox_mAP"], abs=6e-4)  # test's mAP is rounded to 3 decimals


# --- more than one class: TIDE's class and "both" errors ---------------------------------
def two_classes(boxes):
    """Ground truth of one image: ``boxes`` as (category id, bbox), classes 1 and 2."""
    gt = coco([(1, b) for _, b in boxes])
    for ann, (cat, _) in zip(gt["annotations"], boxes, strict=True):
        ann["category_id"] = cat
    gt["categories"] = [{"id": 1, "name": "circle"}, {"id": 2, "name": "square"}]
    return gt


def test_class_and_both_errors_and_what_fixing_them_gains():
    gt = two_classes([(1, A), (2, B)])
    dets = [{**det(A, 0.9), "category_id": 2},  # on A (class 1) but called class 2: classification
            {**det([55, 55, 10, 10], 0.8), "category_id": 1},  # IoU 25/175 with B (class 2), none with A: both
            {**det(B, 0.7), "category_id": 2}]  # right
    errors = classify(gt, dets)
    assert errors.true_positive == [2] and list(errors.classification) == [0] and errors.both == [1]
    assert errors.classification[0] is gt["annotations"][0] and not errors.missed  # the error points at A
    result = tide_errors(gt, dets)
    assert result["types"] == ["classification", "localisation", "both", "duplicate", "background", "missed"]
    assert result["counts"] == {"true_positive": 1, "classification": 1, "localisation": 0, "both": 1,
                                "duplicate": 0, "background": 0, "missed": 0}
    # per class, then averaged (COCO): class 1 has only the "both" detection, class 2 a false then a true positive
    base = np.mean([reference_ap([0.0], 1, 0.5), reference_ap([0.0, 1.0], 1, 0.5)])
    assert result["ap50"] == pytest.approx(base) == pytest.approx(0.25)
    # relabelled, the first detection finds A before the "both" one: both classes at AP 1
    assert result["delta_map"]["classification"] == pytest.approx(1.0 - base)
    assert result["delta_map"]["both"] == 0.0  # suppressing it leaves class 1 without a true positive
    assert "Fix classification errors first" in fix_first(result) and "of the 6 error types" in fix_first(result)


def test_matching_needs_the_same_class():
    gt = two_classes([(1, A), (2, B)])
    dets = [{**det(A, 0.9), "category_id": 2}, {**det(B, 0.8), "category_id": 2}]
    (m,) = match_detections(gt, dets, score_thr=0.5)
    assert m.tp == [dets[1]] and m.fp == [dets[0]] and m.missed == [gt["annotations"][0]]


def test_one_class_keeps_the_four_types():
    gt = coco([(1, A)])
    result = tide_errors(gt, [det(A, 0.9)])
    assert result["types"] == list(ERROR_TYPES) and set(result["counts"]) == set(COUNT_KEYS)


def test_per_class_ap_and_confusion_matrix_count_each_detection_once(tmp_path):
    from balloondet.detect.per_class import confusion_matrix, confusion_table, per_class, per_class_ap

    gt = two_classes([(1, A), (2, B), (2, C), (1, D)])
    dets = [{**det(A, 0.9), "category_id": 1},  # right
            {**det(A, 0.85), "category_id": 2},  # a second box on A, of the wrong class: nothing left to take
            {**det(B, 0.8), "category_id": 1},  # B is a square: confused
            {**det([300, 300, 10, 10], 0.7), "category_id": 2},  # on nothing
            {**det(C, 0.2), "category_id": 2}]  # below the score threshold: C counts as missed
    matrix = confusion_matrix(gt, dets, score_thr=0.3)
    #        predicted: circle square background(missed)
    assert matrix.tolist() == [[1, 0, 1],  # circles: A found, D missed
                               [1, 0, 1],  # squares: B called a circle, C missed
                               [0, 2, 0]]  # background: the second box on A and the one on nothing
    assert matrix.sum() == len(dets) - 1 + 2  # every detection above the threshold once, and the 2 missed boxes
    rows = per_class_ap(gt, dets)
    assert [r["class"] for r in rows] == ["circle", "square"] and [r["boxes"] for r in rows] == [2, 2]
    # circles: A (0.9) right, B (0.8) wrong, D never: reference AP at IoU 1.0 boxes, 2 boxes
    assert rows[0]["ap50"] == pytest.approx(reference_ap([1.0, 0.0], 2, 0.5))
    assert rows[1]["ap50"] == pytest.approx(reference_ap([0.0, 0.0, 1.0], 2, 0.5))
    assert "| square | 1 | 0 | 1 |" in confusion_table(matrix, ["circle", "square"])

    root = tmp_path / "root"
    root.mkdir()
    (root / "val.json").write_text(json.dumps(gt))
    (tmp_path / "test_detections.bbox.json").write_text(json.dumps(dets))
    record = per_class(tmp_path, root, score_thr=0.3, out=tmp_path / "per_class.png")
    assert record["confusion"]["counts"] == matrix.tolist()
    assert json.loads((tmp_path / "per_class.json").read_text())["ap"] == rows
    assert (tmp_path / "per_class.png").stat().st_size > 5_000
