"""The `predict` step: detections on images, drawn by mmdet's visualizer and written as JSON."""
from __future__ import annotations

import json
from pathlib import Path

from .io import BalloonDataError, atomic_path, write_json_atomic
from .model import load_model

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def list_images(source) -> list[Path]:
    source = Path(source)
    if source.is_dir():
        images = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise BalloonDataError(f"{source}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return images
    if not source.is_file():
        raise BalloonDataError(f"image not found: {source}")
    return [source]


def read_image(path) -> "np.ndarray":  # noqa: F821
    """RGB uint8, EXIF rotation applied like mmcv's loader; a clear error when unreadable."""
    import mmcv

    if not Path(path).is_file():
        raise BalloonDataError(f"image not found: {path}")
    try:
        img = mmcv.imread(str(path), channel_order="rgb")
    except Exception as err:  # noqa: BLE001  (mmcv raises several types)
        raise BalloonDataError(f"unreadable image {path} ({err})") from None
    if img is None:
        raise BalloonDataError(f"unreadable image {path}")
    return img


def detections_of(data_sample, score_thr: float, classes) -> list[dict]:
    """Detections above ``score_thr`` in original-image pixels, best first."""
    pred = data_sample.pred_instances
    keep = pred.scores >= score_thr
    out = []
    for box, score, label in zip(pred.bboxes[keep].tolist(), pred.scores[keep].tolist(), pred.labels[keep].tolist()):
        out.append({"bbox_xyxy": [round(v, 2) for v in box], "score": round(score, 5),
                    "label": int(label), "class": classes[label]})
    return sorted(out, key=lambda d: -d["score"])


def predict(config, checkpoint, source, score_thr: float = 0.3, out="work_dirs/predict", device="auto",
            model=None) -> list[dict]:
    """Detect balloons in an image or a folder of images.

    Writes ``OUT/<image name>`` with boxes, class and score drawn, and
    ``OUT/predictions.json`` (one entry per image, boxes ``[x1, y1, x2, y2]`` in original
    pixels). Pass an already loaded ``model`` to skip loading. Returns the JSON entries.
    """
    from mmdet.apis import inference_detector
    from mmdet.visualization import DetLocalVisualizer

    images = list_images(source)
    model = model or load_model(config, checkpoint, device)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    visualizer = DetLocalVisualizer(name=f"balloondet-predict-{id(model)}")
    visualizer.dataset_meta = model.dataset_meta
    classes = model.dataset_meta["classes"]
    entries = []
    for path in images:
        img = read_image(path)
        sample = inference_detector(model, str(path))
        with atomic_path(out / path.name, suffix=path.suffix) as tmp:
            visualizer.add_datasample(path.name, img, sample, draw_gt=False, pred_score_thr=score_thr,
                                      out_file=str(tmp))
        entries.append({"image": str(path), "width": img.shape[1], "height": img.shape[0],
                        "detections": detections_of(sample, score_thr, classes)})
        print(f"{path.name}: {len(entries[-1]['detections'])} balloon(s) with score >= {score_thr}")
    write_json_atomic(entries, out / "predictions.json")
    return entries


def load_predictions(out) -> list[dict]:
    return json.loads((Path(out) / "predictions.json").read_text())
