"""Regenerate every README figure from a run's work dir (`balloondet figures WORK_DIR`)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from .io import BalloonDataError


def run_config(work_dir) -> Path:
    """The config that mmengine saved into the work dir when the run started."""
    configs = sorted(Path(work_dir).glob("*.py"))
    if not configs:
        raise BalloonDataError(f"{work_dir}: no saved config (*.py); is this a training work dir?")
    return configs[0]


def example_image(data_root="data/balloon", split="val") -> Path:
    """A val image worth showing: the one with the most labelled balloons (ties: first by name)."""
    coco = json.loads((Path(data_root) / f"{split}.json").read_text())
    counts = {img["id"]: 0 for img in coco["images"]}
    for ann in coco["annotations"]:
        counts[ann["image_id"]] += 1
    best = max(sorted(coco["images"], key=lambda i: i["file_name"]), key=lambda i: counts[i["id"]])
    return Path(data_root) / split / best["file_name"]


def make_figures(work_dir, data_root="data/balloon", image=None, out="figures", device="auto",
                 cam_method="gradcam", score_thr=0.3) -> list[Path]:
    """dataset, training curves, prediction, backbone/neck feature maps and Grad-CAM figures."""
    from .cam import cam
    from .curves import plot_curves
    from .featmap import featmap
    from .model import find_checkpoint, load_model
    from .plot_dataset import plot_dataset
    from .predict import predict

    out = Path(out)
    config = run_config(work_dir)
    image = Path(image) if image else example_image(data_root)
    model = load_model(config, find_checkpoint(work_dir), device)
    plot_dataset(data_root, out=out / "dataset.png")
    plot_curves(work_dir, out=out / "training_curves.png")
    predict(config, None, image, score_thr=score_thr, out=Path(work_dir) / "predict", model=model)
    shutil.copyfile(Path(work_dir) / "predict" / image.name, out / "balloon.jpg")
    featmap(config, None, image, out=out, model=model)
    cam(config, None, image, method=cam_method, score_thr=score_thr, out=out / "grad_visualization.png", model=model)
    written = [out / n for n in ("dataset.png", "training_curves.png", "balloon.jpg", "backbone_visualization.png",
                                 "neck_visualization.png", "grad_visualization.png")]
    print("wrote " + ", ".join(str(p) for p in written))
    return written
