"""`balloondet export`: the trained detector as one ONNX file (or an OpenVINO IR) that runs without PyTorch or mmdet.

The file holds the whole detector after the resize, as mmdeploy's end-to-end RTMDet does: it takes the photo
already resized so its longer side is the test size (BGR, uint8, ``(1, 3, h, w)`` of any ``h, w`` up to that size:
``letterbox`` does it as mmcv's ``Resize(keep_ratio=True)`` does), pads it to the test size with the pipeline's
grey, normalises it (the config's mean and std, BGR as OpenCV reads), runs the network, decodes RTMDet's distances
at every prior (clipped to the padded size, as mmdet clips), keeps the scores above the config's ``score_thr``, the
best ``nms_pre`` per level, applies class-aware NMS and returns at most ``max_per_img`` detections: ``boxes`` (N,
4: x1, y1, x2, y2 in the input's pixels), ``scores`` (N) and ``labels`` (N, class indices), best first. The resize
stays outside: OpenCV's bilinear resize on uint8 is what the model saw in training and test, and no graph resize
reproduces it to the bit.

The exporter is PyTorch's TorchScript-based one (``dynamo=False``), opset 17: it traces the post-processing's
data-dependent shapes (score filter, NMS) into ONNX's NonZero, TopK and NonMaxSuppression without the shape
hints that the ``torch.export``-based exporter (torch's default since 2.9) needs for them, and both runtimes run
opset 17. The file carries what checks it: ``METADATA_KEY`` in the ONNX metadata (and the IR's runtime info):
the classes, the test size, the pad value, the config and the checkpoint's SHA-256.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from balloondet.core import defaults
from balloondet.core.errors import ConfigError, ModelError
from balloondet.core.files import atomic_path, display_path

if TYPE_CHECKING:
    import numpy as np
    import torch

    from balloondet.engine.detector import Detector

EXPORT_FORMATS = defaults.EXPORT_FORMATS
SUFFIXES = {"onnx": ".onnx", "openvino": ".xml"}  # OpenVINO's IR: MODEL.xml with its weights in MODEL.bin
OPSET = defaults.ONNX_OPSET
METADATA_KEY = "balloondet"
FORMAT_VERSION = 1
INPUT, OUTPUTS = "image", ("boxes", "scores", "labels")


# --- what the test pipeline does before the network -------------------------------------
def pipeline_geometry(cfg: Any) -> dict[str, Any]:
    """The test pipeline's resize and pad: ``{"scale": (w, h), "pad_size": (w, h), "pad_value": v}``; a
    ``ConfigError`` for pipelines the export does not reproduce."""
    steps = {step["type"].split(".")[-1]: step for step in cfg.test_dataloader.dataset.pipeline}
    resize, pad = steps.get("Resize"), steps.get("Pad")
    if not resize or not resize.get("keep_ratio") or not pad or not pad.get("size"):
        raise ConfigError("export reproduces the RTMDet test pipeline only: Resize(scale, keep_ratio=True), then "
                          f"Pad(size); this config's test pipeline is {', '.join(steps)}")
    pad_val = pad.get("pad_val", 0)
    pad_val = pad_val.get("img", 0) if isinstance(pad_val, dict) else pad_val
    pad_val = pad_val[0] if isinstance(pad_val, (list, tuple)) else pad_val
    return {"scale": tuple(resize["scale"]), "pad_size": tuple(pad["size"]), "pad_value": float(pad_val)}


def letterbox(img: np.ndarray, scale: tuple[int, int]) -> tuple[np.ndarray, tuple[float, float]]:
    """``img`` (H, W, 3) resized as mmcv's ``imrescale`` does (the longer side to fit ``scale``, OpenCV
    bilinear), and the (x, y) factors that take boxes back to ``img``'s pixels (divide by them)."""
    import cv2

    h, w = img.shape[:2]
    factor = min(max(scale) / max(h, w), min(scale) / min(h, w))
    new_w, new_h = int(w * factor + 0.5), int(h * factor + 0.5)
    resized = cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    return resized, (new_w / w, new_h / h)


# --- the graph --------------------------------------------------------------------------
def end_to_end(detector: Detector) -> torch.nn.Module:
    """The detector after the resize as one ``torch.nn.Module``: ``forward(image uint8 (1, 3, h, w))`` ->
    (boxes, scores, labels). Mirrors mmdet's ``BaseDenseHead._predict_by_feat_single`` and ``batched_nms``."""
    import torch
    import torch.nn.functional as F
    from torchvision.ops import batched_nms

    model = detector.model
    geometry = pipeline_geometry(model.cfg)
    pad_w, pad_h = geometry["pad_size"]
    test_cfg = model.bbox_head.test_cfg
    pre = model.data_preprocessor
    if getattr(pre, "_channel_conversion", False):
        raise ConfigError("export expects a BGR model (bgr_to_rgb=False, as RTMDet's); this one converts to RGB")
    strides = [s[0] if isinstance(s, (tuple, list)) else s for s in model.bbox_head.prior_generator.strides]
    priors = model.bbox_head.prior_generator.grid_priors(
        [(pad_h // s, pad_w // s) for s in strides], dtype=torch.float32, device="cpu")

    class EndToEnd(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.register_buffer("mean", pre.mean.detach().float().reshape(1, 3, 1, 1).clone())
            self.register_buffer("std", pre.std.detach().float().reshape(1, 3, 1, 1).clone())
            self.register_buffer("limit", torch.tensor([pad_w, pad_h, pad_w, pad_h], dtype=torch.float32))
            for i, p in enumerate(priors):
                self.register_buffer(f"priors{i}", p[:, :2].contiguous())

        def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            h, w = image.shape[2], image.shape[3]
            x = F.pad(image.float(), (0, pad_w - w, 0, pad_h - h), value=geometry["pad_value"])
            cls_scores, bbox_preds = self.model._forward((x - self.mean) / self.std)
            all_boxes, all_scores, all_labels = [], [], []
            for i, (cls, reg) in enumerate(zip(cls_scores, bbox_preds, strict=True)):
                scores = cls[0].permute(1, 2, 0).reshape(-1, cls.shape[1]).sigmoid()
                dist = reg[0].permute(1, 2, 0).reshape(-1, 4)
                flat = scores.reshape(-1)
                keep = torch.nonzero(flat > test_cfg.score_thr).reshape(-1)
                k = torch.clamp(torch.tensor(test_cfg.nms_pre), max=keep.shape[0])
                top, order = torch.topk(flat[keep], k)
                index = keep[order]
                prior = index // cls.shape[1]
                points, d = getattr(self, f"priors{i}")[prior], dist[prior]
                box = torch.stack([points[:, 0] - d[:, 0], points[:, 1] - d[:, 1],
                                   points[:, 0] + d[:, 2], points[:, 1] + d[:, 3]], -1)
                # mmdet clips to img_shape, which its Pad sets to the padded size: boxes may reach into the pad
                all_boxes.append(torch.min(torch.clamp(box, min=0), self.limit))
                all_scores.append(top)
                all_labels.append(index % cls.shape[1])
            boxes, scores, labels = torch.cat(all_boxes), torch.cat(all_scores), torch.cat(all_labels)
            sized = ((boxes[:, 2] - boxes[:, 0]) > test_cfg.get("min_bbox_size", 0)) & \
                ((boxes[:, 3] - boxes[:, 1]) > test_cfg.get("min_bbox_size", 0))
            boxes, scores, labels = boxes[sized], scores[sized], labels[sized]
            kept = batched_nms(boxes, scores, labels, test_cfg.nms.iou_threshold)[:test_cfg.max_per_img]
            return boxes[kept], scores[kept], labels[kept]

    return EndToEnd().eval()


# --- the file ---------------------------------------------------------------------------
def export_metadata(detector: Detector, config: str | Path, checkpoint: str | Path) -> dict[str, Any]:
    """What the exported file carries about itself (checked when it is loaded)."""
    geometry = pipeline_geometry(detector.model.cfg)
    return {"format_version": FORMAT_VERSION, "classes": list(detector.classes),
            "scale": list(geometry["scale"]), "pad_size": list(geometry["pad_size"]),
            "pad_value": geometry["pad_value"], "input": "BGR uint8 (1, 3, h, w), letterboxed to scale",
            "config": Path(str(config)).stem, "checkpoint": Path(checkpoint).name,
            "checkpoint_sha256": hashlib.sha256(Path(checkpoint).read_bytes()).hexdigest()}


def default_export_path(checkpoint: str | Path, fmt: str) -> Path:
    """Beside the checkpoint: ``epoch_40.onnx``, or ``epoch_40_openvino/epoch_40.xml``."""
    checkpoint = Path(checkpoint)
    if fmt == "onnx":
        return checkpoint.with_suffix(".onnx")
    return checkpoint.parent / f"{checkpoint.stem}_openvino" / f"{checkpoint.stem}.xml"


def export_onnx(detector: Detector, out: Path, metadata: dict[str, Any]) -> Path:
    """The end-to-end ONNX file at ``out`` (written atomically), its metadata set, checked by onnx."""
    import warnings

    import onnx
    import torch

    module = end_to_end(detector)
    w, h = metadata["scale"]
    example = torch.full((1, 3, h, w * 3 // 4), 114, dtype=torch.uint8)  # not square: h and w stay dynamic
    with atomic_path(out, suffix=".onnx") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on Python values in the post-processing
        torch.onnx.export(module, (example,), str(tmp), dynamo=False, opset_version=OPSET, input_names=[INPUT],
                          output_names=list(OUTPUTS), dynamic_axes={INPUT: {2: "height", 3: "width"},
                                                                     **{o: {0: "detections"} for o in OUTPUTS}})
        graph = onnx.load(str(tmp))
        onnx.checker.check_model(graph)
        entry = graph.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, json.dumps(metadata)
        onnx.save(graph, str(tmp))
    return out


def export_openvino(onnx_path: Path, out: Path, metadata: dict[str, Any]) -> Path:
    """OpenVINO's IR (``out`` = MODEL.xml, with MODEL.bin) converted from the ONNX file, metadata in its rt_info."""
    import openvino as ov

    model = ov.convert_model(str(onnx_path))
    model.set_rt_info(json.dumps(metadata), [METADATA_KEY])
    out.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(out), compress_to_fp16=False)  # fp32 weights: the same detections as ONNX
    return out


def export_model(config: str | Path, checkpoint: str | Path, fmt: str = "onnx", out: str | Path | None = None,
                 ) -> Path:
    """Export ``checkpoint`` (of ``config``) as ``fmt`` (``onnx`` or ``openvino``) to ``out`` (default: beside the
    checkpoint, ``default_export_path``); returns the file. OpenVINO's IR is converted from the ONNX export."""
    from balloondet.engine.detector import Detector

    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}: use {', '.join(EXPORT_FORMATS)}")
    out = Path(out) if out else default_export_path(checkpoint, fmt)
    if out.suffix != SUFFIXES[fmt]:
        raise ConfigError(f"--out {out}: a {fmt} export is a {SUFFIXES[fmt]} file")
    detector = Detector.load(config, checkpoint, device="cpu", precision="fp32", channels_last=False)
    metadata = export_metadata(detector, config, checkpoint)
    if fmt == "onnx":
        export_onnx(detector, out, metadata)
    else:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            export_openvino(export_onnx(detector, Path(tmp) / "model.onnx", metadata), out, metadata)
    size = file_size(out)
    print(f"exported {display_path(out)} ({fmt}, {size / 1e6:.1f} MB; classes {', '.join(detector.classes)}; "
          f"input: BGR uint8 letterboxed to {metadata['scale'][0]}x{metadata['scale'][1]})")
    return out


def file_size(path: Path) -> int:
    """Bytes of a model file (an OpenVINO IR with its .bin)."""
    return sum(p.stat().st_size for p in (path, path.with_suffix(".bin")) if p.is_file())


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata an export carries; a ``ModelError`` for a file that is not a balloondet export."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"exported model not found: {path} (make one with `balloondet export CONFIG CHECKPOINT`)")
    try:
        if path.suffix == ".onnx":
            import onnx

            props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
            raw = props.get(METADATA_KEY)
        elif path.suffix == ".xml":
            import openvino as ov

            model = ov.Core().read_model(str(path))
            raw = model.get_rt_info([METADATA_KEY]).astype(str) if model.has_rt_info([METADATA_KEY]) else None
        else:
            raise ModelError(f"{path}: an export is a .onnx file or an OpenVINO .xml (with its .bin)")
    except ModelError:
        raise
    except Exception as err:  # noqa: BLE001  (onnx and openvino raise their own types for unreadable files)
        raise ModelError(f"{path}: not a readable {path.suffix[1:]} model ({str(err).splitlines()[0][:200]})") from None
    if raw is None:
        raise ModelError(f"{path}: not a balloondet export (no {METADATA_KEY!r} metadata); export the checkpoint with "
                         "`balloondet export`")
    meta = json.loads(raw)
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelError(f"{path}: export format {meta.get('format_version')}, this balloondet reads {FORMAT_VERSION}")
    return meta
