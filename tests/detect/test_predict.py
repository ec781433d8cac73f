"""The `predict` step on the trained smoke model."""
import json

from balloondet.detect.predict import predict
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
