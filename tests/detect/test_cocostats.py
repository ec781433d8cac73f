"""COCO detections against ground truth, on hand-made COCO data: matching, the threshold sweep,
precision-recall, the bootstrap interval."""
import numpy as np
import pytest

from balloondet.detect.cocostats import (
    bootstrap_map,
    coco_eval,
    map_of,
    match_detections,
    pr_curve,
    resampled_map,
    summary_lines,
    threshold_sweep,
)


def det(image_id, bbox, score):
    return {"image_id": image_id, "category_id": 1, "bbox": bbox, "score": score}


@pytest.fixture
def hand_case():
    """Three images whose matches at score >= 0.3 and IoU 0.5 were worked out by hand."""
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 200, "height": 200} for i in (1, 2, 3)]
    boxes = {1: [[0, 0, 10, 10], [20, 20, 10, 10], [50, 50, 10, 10]], 2: [[0, 0, 20, 20]], 3: []}
    anns = [{"id": n, "image_id": i, "category_id": 1, "bbox": b, "area": b[2] * b[3], "iscrowd": 0}
            for n, (i, b) in enumerate(((i, b) for i in boxes for b in boxes[i]), start=1)]
    gt = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "balloon"}]}
    dets = [
        det(1, [0, 0, 10, 10], 0.9),    # box A exactly: true positive
        det(1, [0, 0, 10, 10], 0.8),    # A again, already taken: false positive
        det(1, [21, 21, 10, 10], 0.6),  # box B at IoU 81/119 = 0.68: true positive
        det(1, [100, 100, 10, 10], 0.5),  # nothing there: false positive
        det(1, [50, 50, 10, 10], 0.1),  # box C, but under the threshold: C is missed
        det(2, [10, 10, 20, 20], 0.95),  # box D at IoU 100/700 = 0.14: false positive, D missed
    ]
    return gt, dets


def test_gt_vs_pred_counts_match_the_hand_computed_case(hand_case):
    gt, dets = hand_case
    matches = match_detections(gt, dets, score_thr=0.3, iou_thr=0.5)
    assert [m.image["id"] for m in matches] == [1, 2, 3]
    assert [m.counts for m in matches] == [(2, 2, 1), (0, 1, 1), (0, 0, 0)]
    assert [d["score"] for d in matches[0].tp] == [0.9, 0.6]
    assert [a["bbox"] for a in matches[0].missed] == [[50, 50, 10, 10]]
    assert [m.counts for m in match_detections(gt, dets, score_thr=0.05)][0] == (3, 2, 0)  # C found


def test_threshold_sweep_counts_every_image(hand_case):
    gt, dets = hand_case
    sweep = threshold_sweep(gt, dets, [0.05, 0.3, 0.99])
    assert sweep["tp"].tolist() == [3, 2, 0] and sweep["fp"].tolist() == [3, 3, 0]
    assert sweep["precision"][1] == pytest.approx(2 / 5) and sweep["recall"][1] == pytest.approx(2 / 4)
    assert sweep["f1"][1] == pytest.approx(2 * 0.4 * 0.5 / 0.9)
    assert sweep["precision"][2] == 1.0 and sweep["recall"][2] == 0.0  # nothing kept


def test_pr_curve_and_summary_come_from_cocoeval(hand_case):
    gt, dets = hand_case
    ev = coco_eval(gt, dets)
    recall, precision, ap50 = pr_curve(ev, 0.5)
    assert recall.max() == pytest.approx(0.75)  # A, B, C found at IoU 0.5; D never
    lines = summary_lines(ev)
    assert len(lines) == 12 and float(lines[1].split("=")[-1]) == pytest.approx(ap50, abs=1e-3)
    with pytest.raises(Exception, match="thresholds"):
        pr_curve(ev, 0.52)


def synthetic_case(n_images, seed=0):
    """Images with 1-4 boxes each; the detector finds most of them roughly, plus some noise."""
    rng = np.random.default_rng(seed)
    images, anns, dets = [], [], []
    for i in range(1, n_images + 1):
        images.append({"id": i, "file_name": f"{i}.jpg", "width": 400, "height": 400})
        for _ in range(rng.integers(1, 5)):
            x, y, w, h = *rng.uniform(0, 300, 2), *rng.uniform(20, 100, 2)
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": 1, "bbox": [x, y, w, h],
                         "area": w * h, "iscrowd": 0})
            if rng.random() < 0.8:
                jitter = rng.normal(0, 0.12, 4) * [w, h, w, h]
                dets.append(det(i, [x + jitter[0], y + jitter[1], w + jitter[2], h + jitter[3]],
                                float(rng.uniform(0.3, 1))))
        if rng.random() < 0.5:
            dets.append(det(i, [*rng.uniform(0, 300, 2), 40, 40], float(rng.uniform(0, 0.8))))
    return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "balloon"}]}, dets


def test_resampling_results_equals_scoring_a_resampled_dataset():
    """The shortcut (reuse per-image results) against the definition (copies with their own ids)."""
    gt, dets = synthetic_case(8)
    picks = [3, 3, 0, 7, 7, 7, 1, 5]
    images, anns, new_dets = [], [], []
    for new_id, pick in enumerate(picks, start=1):
        old_id = gt["images"][pick]["id"]
        images.append({**gt["images"][pick], "id": new_id})
        anns += [{**a, "image_id": new_id, "id": len(anns) + k + 1}
                 for k, a in enumerate(a for a in gt["annotations"] if a["image_id"] == old_id)]
        new_dets += [{**d, "image_id": new_id} for d in dets if d["image_id"] == old_id]
    resampled = {**gt, "images": images, "annotations": anns}
    expected = map_of(coco_eval(resampled, new_dets, all_areas=False))
    assert resampled_map(coco_eval(gt, dets, all_areas=False), picks) == pytest.approx(expected, abs=1e-12)


def test_bootstrap_interval_holds_the_estimate_and_narrows_with_more_images():
    small_gt, small_dets = synthetic_case(6)
    large_gt, large_dets = synthetic_case(60)
    small = bootstrap_map(small_gt, small_dets, n=200, seed=0)
    large = bootstrap_map(large_gt, large_dets, n=200, seed=0)
    for result, gt, dets in ((small, small_gt, small_dets), (large, large_gt, large_dets)):
        lo, hi = result["ci"]
        assert lo <= result["bbox_mAP"] <= hi
        assert result["bbox_mAP"] == pytest.approx(map_of(coco_eval(gt, dets)), abs=1e-12)  # = the full setup
    assert large["ci"][1] - large["ci"][0] < 0.6 * (small["ci"][1] - small["ci"][0])
    assert bootstrap_map(small_gt, small_dets, n=200, seed=0) == small  # seeded


def test_bootstrap_without_detections_is_zero():
    gt, _ = synthetic_case(5)
    result = bootstrap_map(gt, [], n=20)
    assert result["bbox_mAP"] == 0 and result["ci"] == [0.0, 0.0]
