"""The `predict` step on the trained smoke model."""
import json
import warnings

import torch

from balloondet.detect.predict import cut_to_photo, predict
from balloondet.detect.test import evaluate_checkpoint

SMOKE = "rtmdet_tiny_smoke_synthetic"


def test_predict_json_matches_what_test_scores(trained_smoke, synthetic_root, smoke_detector, tmp_path):
    """The detections `predict` writes are the ones `balloondet test` evaluates."""
    evaluate_checkpoint(SMOKE, trained_smoke["checkpoint"], work_dir=tmp_path, device="cpu", data_root=synthetic_root,
                        precision="fp32")  # smoke_detector's: `auto` is bf16 on a CPU with native bfloat16
    scored = json.loads((tmp_path / "test_detections.bbox.json").read_text())
    coco = json.loads((synthetic_root / "val.json").read_text())
    img = coco["images"][1]
    entries = predict(smoke_detector, synthetic_root / "val" / img["file_name"], score_thr=0.0,
                      out=tmp_path / "pred")
    ours = sorted(((d["score"], *d["bbox_xyxy"]) for d in entries[0]["detections"]), reverse=True)
    theirs = sorted(((d["score"], d["bbox"][0], d["bbox"][1], d["bbox"][0] + d["bbox"][2], d["bbox"][1] + d["bbox"][3])
                     for d in scored if d["image_id"] == img["id"]), reverse=True)
    assert len(ours) == len(theirs) > 0
    for score, *box in ours:  # pair each detection with its twin (near-equal scores may swap order)
        twin = min(theirs, key=lambda t: abs(t[0] - score) + sum(abs(a - b) for a, b in zip(t[1:], box, strict=True)))
        gap = max(abs(a - b) for a, b in zip(twin[1:], box, strict=True))
        assert abs(twin[0] - score) < 1e-4 and gap < 0.02, (score, box, twin)
        theirs.remove(twin)
    assert (entries[0]["width"], entries[0]["height"]) == (img["width"], img["height"])  # original pixels
    assert (tmp_path / "pred" / img["file_name"]).stat().st_size > 5_000
    assert json.loads((tmp_path / "pred" / "predictions.json").read_text()) == entries


def test_predict_folder_and_threshold(synthetic_root, smoke_detector, tmp_path):
    entries = predict(smoke_detector, synthetic_root / "val", score_thr=0.5, out=tmp_path)
    assert len(entries) == len(list((synthetic_root / "val").glob("*.jpg")))
    assert all(d["score"] >= 0.5 and d["class"] == "balloon" for e in entries for d in e["detections"])


def test_boxes_past_the_photo_are_drawn_cut_and_written_as_predicted(smoke_detector, synthetic_root, tmp_path):
    """mmdet decodes boxes within the padded input: one may reach past the photo. The drawing cuts it (no
    visualizer warning), the JSON keeps it as `test` scores it."""
    image = sorted((synthetic_root / "val").glob("*.jpg"))[0]
    sample = smoke_detector.predict(image)
    h, w = sample.ori_shape
    sample.pred_instances = sample.pred_instances[:1]
    sample.pred_instances.bboxes = torch.tensor([[w - 20.0, h - 30.0, w + 15.0, h + 40.0]])
    sample.pred_instances.scores = torch.tensor([0.9])

    class Past:  # answers as a Detector, with a box past the photo's corner
        classes, dataset_meta = smoke_detector.classes, smoke_detector.dataset_meta

        def predict(self, path):
            return sample.clone()

    cut = cut_to_photo(sample, h, w).pred_instances.bboxes
    assert cut.tolist() == [[w - 20.0, h - 30.0, w - 1.0, h - 1.0]]
    assert sample.pred_instances.bboxes[0, 2] == w + 15.0  # the caller's sample is left as it was
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        entries = predict(Past(), image, score_thr=0.5, out=tmp_path)
    assert not [w_ for w_ in caught if "out of bounds" in str(w_.message)]
    assert entries[0]["detections"][0]["bbox_xyxy"] == [w - 20.0, h - 30.0, w + 15.0, h + 40.0]
    assert (tmp_path / image.name).stat().st_size > 5_000
