"""The figures of the test result: ground truth against predictions, precision-recall, box sizes."""
import re

import numpy as np
import pytest


def det(image_id, bbox, score):
    return {"image_id": image_id, "category_id": 1, "bbox": bbox, "score": score}


# --- the figures ----------------------------------------------------------------------
@pytest.fixture
def tested_work_dir(synthetic_root, tmp_path):
    """A work dir as `test` leaves it: val detections in COCO results format (here: made up), and the
    (TP, FP, missed) counts per image that the made-up detections have by their making.

    Every fourth balloon is missed; the others are found by a box shifted by 5 % of its width (IoU
    0.95 / 1.05 = 0.90); the first image has a false positive in its corner (30 px, smaller than any
    synthetic balloon, so IoU < 0.5 with all of them) and a box under the threshold.
    """
    import json

    gt = json.loads((synthetic_root / "val.json").read_text())
    rng = np.random.default_rng(1)
    dets = []
    counts = {img["id"]: [0, 0, 0] for img in gt["images"]}
    for k, ann in enumerate(gt["annotations"]):
        if k % 4 == 3:
            counts[ann["image_id"]][2] += 1  # a miss
            continue
        x, y, w, h = ann["bbox"]
        dets.append(det(ann["image_id"], [x + 0.05 * w, y, w, h], float(rng.uniform(0.4, 1))))
        counts[ann["image_id"]][0] += 1
    first = gt["images"][0]["id"]
    dets.append(det(first, [1, 1, 30, 30], 0.9))  # a false positive
    counts[first][1] += 1
    dets.append(det(first, [1, 1, 30, 30], 0.1))  # under the threshold: not drawn
    (tmp_path / "test_detections.bbox.json").write_text(json.dumps(dets))
    return tmp_path, gt, [tuple(counts[img["id"]]) for img in gt["images"]]


def test_gt_vs_pred_figure_titles_carry_the_counts(tested_work_dir, synthetic_root, tmp_path):
    from balloondet.detect.report import gt_vs_pred

    work_dir, gt, expected = tested_work_dir
    fig = gt_vs_pred(work_dir, synthetic_root, score_thr=0.3, out=tmp_path / "gt.png")
    assert (tmp_path / "gt.png").stat().st_size > 20_000
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert len(titles) == len(gt["images"])
    assert [tuple(int(n) for n in re.findall(r"(?:TP|FP|missed) (\d+)", t)) for t in titles] == expected
    tp, fp, missed = (sum(c[i] for c in expected) for i in range(3))
    assert fig._suptitle.get_text().endswith(f"{tp} found, {fp} false, {missed} missed of {tp + missed} balloons")
    assert {t.get_text() for t in fig.legends[0].get_texts()} == {"true positive", "false positive", "missed"}


def test_pr_figure(tested_work_dir, synthetic_root, tmp_path):
    from balloondet.detect.report import pr_curves

    work_dir, _, _ = tested_work_dir
    fig = pr_curves(work_dir, synthetic_root, score_thr=0.3, out=tmp_path / "pr.png")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels[0].startswith("IoU 0.5: AP") and labels[1].startswith("IoU 0.75: AP") and "0.3" in labels[2]
    assert [line.get_label() for line in fig.axes[1].get_lines()][:3] == ["precision", "recall", "F1"]


def test_figures_need_the_detections_of_test(synthetic_root, tmp_path):
    from balloondet.core.errors import DataError
    from balloondet.detect.report import gt_vs_pred

    with pytest.raises(DataError, match="balloondet test"):
        gt_vs_pred(tmp_path, synthetic_root, out=None)


def test_box_sizes_at_the_network_input(synthetic_root, tmp_path):
    from balloondet.detect.report import band_counts, box_sizes, input_scale, sizes_at_input

    assert input_scale("rtmdet_tiny_smoke_synthetic") == ((192, 192), True)
    coco = {"images": [{"id": 1, "width": 400, "height": 200}],
            "annotations": [{"image_id": 1, "bbox": [0, 0, 40, 20]}, {"image_id": 1, "bbox": [0, 0, 200, 150]}]}
    sizes = sizes_at_input(coco, (320, 320), keep_ratio=True)  # long side 400 -> 320: x0.8
    assert sizes == pytest.approx([(32 * 16) ** 0.5, (160 * 120) ** 0.5])
    assert sizes_at_input(coco, (200, 100), keep_ratio=False) == pytest.approx([(20 * 10) ** 0.5, (100 * 75) ** 0.5])
    assert band_counts(np.array([10, 31.9, 32, 95, 96, 500])) == {"small": 2, "medium": 2, "large": 2}
    fig = box_sizes("rtmdet_tiny_smoke_synthetic", synthetic_root, out=tmp_path / "sizes.png")
    assert (tmp_path / "sizes.png").is_file() and "192×192" in fig.axes[0].get_title()


