"""Which boxes a CAM explains: predicted, missed and false-positive boxes, matched like the ground-truth figure."""
import pytest
import torch


def test_missed_and_false_positive_targets_match_one_to_one_like_the_figure():
    """Two balloons under one prediction leave one missed; a second prediction on a found balloon is a
    false positive: the outcome the ground-truth-vs-prediction figure counts (cocostats.match_detections:
    1 true positive on the pair, 1 on the third balloon, 1 false positive, 1 missed)."""
    from mmengine.structures import InstanceData

    from balloondet.detect.cocostats import match_detections
    from balloondet.explain.selection import select_targets

    gt_boxes = torch.tensor([[0.0, 0, 100, 100], [0.0, 10, 100, 110], [200.0, 200, 240, 240]])
    gt_labels = torch.zeros(3, dtype=torch.long)
    pred = InstanceData(bboxes=torch.tensor([[0.0, 5, 100, 105], [202.0, 200, 240, 240], [200.0, 202, 240, 242]]),
                        scores=torch.tensor([0.9, 0.8, 0.6]), labels=torch.zeros(3, dtype=torch.long))
    missed, _, _ = select_targets(pred, "missed", score_thr=0.3, gt=(gt_boxes, gt_labels))
    assert len(missed) == 1 and missed[0].tolist() in ([0, 0, 100, 100], [0, 10, 100, 110])
    wrong, _, scores = select_targets(pred, "false-positive", score_thr=0.3, gt=(gt_boxes, gt_labels))
    assert wrong.tolist() == [[200, 202, 240, 242]] and scores.tolist() == pytest.approx([0.6])

    def xywh(b):
        return [b[0], b[1], b[2] - b[0], b[3] - b[1]]

    gt = {"images": [{"id": 1}], "annotations": [{"image_id": 1, "bbox": xywh(b)} for b in gt_boxes.tolist()]}
    dets = [{"image_id": 1, "bbox": xywh(b), "score": s}
            for b, s in zip(pred.bboxes.tolist(), pred.scores.tolist(), strict=True)]
    assert match_detections(gt, dets, score_thr=0.3)[0].counts == (2, 1, 1)  # the figure's count: the same boxes
