"""The `predict` step: detections on images, drawn by mmdet's visualizer and written as JSON."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from balloondet.core import defaults
from balloondet.core.files import atomic_path, write_json_atomic
from balloondet.core.images import list_images, read_image

if TYPE_CHECKING:
    from mmdet.structures import DetDataSample

    from balloondet.engine.detector import Detector


def detections_of(data_sample: DetDataSample, score_thr: float, classes: Sequence[str]) -> list[dict]:
    """Detections above ``score_thr`` in original-image pixels, best first."""
    pred = data_sample.pred_instances
    keep = pred.scores >= score_thr
    out = []
    kept = (pred.bboxes[keep].tolist(), pred.scores[keep].tolist(), pred.labels[keep].tolist())
    for box, score, label in zip(*kept, strict=True):
        out.append({"bbox_xyxy": [round(v, 2) for v in box], "score": round(score, 5),
                    "label": int(label), "class": classes[label]})
    return sorted(out, key=lambda d: -d["score"])


def cut_to_photo(data_sample: DetDataSample, height: int, width: int) -> DetDataSample:
    """A copy whose boxes are cut to the photo, for drawing. mmdet decodes boxes within the padded network
    input (its ``Pad`` sets ``img_shape`` to the padded square), so a box by a 4:3 photo's edge can reach past
    it, and mmengine's visualizer warns for each; the JSON keeps them as `test` scores them."""
    drawn, pred = data_sample.clone(), data_sample.pred_instances.clone()  # shallow: the tensors are shared
    bboxes = pred.bboxes.clone()
    bboxes[:, 0::2] = bboxes[:, 0::2].clamp(0, width - 1)  # to the last pixel: mmengine draws x < width only
    bboxes[:, 1::2] = bboxes[:, 1::2].clamp(0, height - 1)
    pred.bboxes = bboxes
    drawn.pred_instances = pred
    return drawn


def predict(detector: Detector, source: str | Path, score_thr: float = defaults.SCORE_THR,
            out: str | Path = defaults.PREDICT_DIR) -> list[dict]:
    """Detect objects (the model's classes) in an image or a folder of images. ``detector``: a ``Detector``, or
    anything that answers as one (``predict``, ``classes``, ``dataset_meta``: ``deploy.backend``'s exports).

    Writes ``OUT/<image name>`` with boxes, class and score drawn, and
    ``OUT/predictions.json`` (one entry per image, boxes ``[x1, y1, x2, y2]`` in original
    pixels), in the detector's precision. Returns the JSON entries.
    """
    from mmdet.visualization import DetLocalVisualizer

    images = list_images(source)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    visualizer = DetLocalVisualizer(name=f"balloondet-predict-{id(detector)}")
    visualizer.dataset_meta = detector.dataset_meta
    classes = detector.classes
    entries = []
    for path in images:
        img = read_image(path)
        sample = detector.predict(path)
        with atomic_path(out / path.name, suffix=path.suffix) as tmp:
            visualizer.add_datasample(path.name, img, cut_to_photo(sample, *img.shape[:2]), draw_gt=False,
                                      pred_score_thr=score_thr, out_file=str(tmp))
        entries.append({"image": str(path), "width": img.shape[1], "height": img.shape[0],
                        "detections": detections_of(sample, score_thr, classes)})
        print(f"{path.name}: {len(entries[-1]['detections'])} detection(s) with score >= {score_thr}")
    write_json_atomic(entries, out / "predictions.json")
    return entries

