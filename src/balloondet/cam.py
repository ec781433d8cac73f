"""The `cam` step: Grad-CAM "box AM" for a detector, built from grad-cam's small pieces.

- ``DetectorWrapper``: a ``torch.nn.Module`` that maps a preprocessed batch to the
  detector's own outputs (final predictions, or every prior's class scores), which is
  what grad-cam's CAM classes call.
- ``PriorScoreTarget`` (Grad-CAM, Grad-CAM++): the class score of the priors inside the
  predicted boxes, on every pyramid level, so the map explains those boxes at the target
  layer's own scale.
- ``BoxScoreTarget`` (AblationCAM): for every box, IoU + score of the final prediction
  that matches it best; the drop of that value measures a channel's importance.
- ``fpn_reshape_transform``: for target layers with several outputs (e.g. the whole neck),
  resizes every scale to the largest and stacks the channels.
- ``CAM_METHODS``: the methods by name (the CLI's choices come from here).

The default layer is the neck's smallest output scale (stride 32): in mmdet's
CSPNeXtPAFPN that is ``neck.out_convs.2`` (mmyolo calls it ``out_layers``).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from . import defaults
from .errors import ConfigError, DataError
from .io import list_images, read_image, save_figure
from .model import get_layer, load_model

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from mmdet.models.detectors import BaseDetector
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData

# name -> pytorch_grad_cam class; the first two use gradients (PriorScoreTarget), the others do not
CAM_METHODS = {"gradcam": "GradCAM", "gradcam++": "GradCAMPlusPlus", "eigencam": "EigenCAM",
               "ablationcam": "AblationCAM"}
GRADIENT_METHODS = ("gradcam", "gradcam++")


def cam_methods() -> dict[str, type]:
    """``CAM_METHODS`` with pytorch_grad_cam's classes."""
    import pytorch_grad_cam

    return {name: getattr(pytorch_grad_cam, cls) for name, cls in CAM_METHODS.items()}


@dataclass
class CamResult:
    """The CAM of one image's top boxes, in original image pixels."""

    heatmap: np.ndarray  # (H, W) in [0, 1]
    boxes: np.ndarray  # (K, 4) x1, y1, x2, y2
    scores: np.ndarray  # (K,)
    labels: np.ndarray  # (K,)
    image: np.ndarray  # (H, W, 3) RGB uint8
    method: str
    layer: str  # target layer name(s), "+"-joined
    image_path: Path | None = None
    figure: Figure | None = None  # set by cam()

    @property
    def focus(self) -> float:
        """``inside_outside_ratio`` of the map: > 1 when the map prefers the boxes, nan if undefined."""
        return inside_outside_ratio(self.heatmap, self.boxes)


class DetectorWrapper(torch.nn.Module):
    """Preprocessed images in, the detector's own outputs out, one entry per image.

    ``predict``: the final predictions (``InstanceData``: bboxes in input pixels, scores,
    labels), after NMS, with gradients. ``dense``: per pyramid level, the priors and the
    class scores of every prior, before any filtering.
    """

    def __init__(self, detector: BaseDetector, data_sample: DetDataSample, mode: str = "predict") -> None:
        super().__init__()
        self.detector = detector
        self.data_sample = data_sample  # geometry of the input (img_shape, pad_shape, ...)
        self.mode = mode

    def forward(self, inputs: torch.Tensor) -> list:
        from mmdet.models.utils import select_single_mlvl

        head = self.detector.bbox_head
        feats = self.detector.extract_feat(inputs)
        cls_scores, bbox_preds = head(feats)
        priors = head.prior_generator.grid_priors([c.shape[-2:] for c in cls_scores], dtype=cls_scores[0].dtype,
                                                  device=cls_scores[0].device)
        if self.mode == "dense":  # every prior's class scores, per level: (priors (P, 2+), scores (P, classes))
            return [[(p, c[i].permute(1, 2, 0).reshape(-1, c.shape[1]).sigmoid())
                     for p, c in zip(priors, cls_scores)] for i in range(len(inputs))]
        # mmdet's predict_by_feat detaches the head outputs; this is its per-image loop, without detach.
        # _predict_by_feat_single is private: tests/test_cam.py pins its signature.
        return [
            head._predict_by_feat_single(
                cls_score_list=select_single_mlvl(cls_scores, i, detach=False),
                bbox_pred_list=select_single_mlvl(bbox_preds, i, detach=False),
                score_factor_list=[None] * len(cls_scores), mlvl_priors=priors,
                img_meta=self.data_sample.metainfo, cfg=head.test_cfg, rescale=False, with_nms=True)
            for i in range(len(inputs))
        ]


class PriorScoreTarget:
    """Sum over pyramid levels of the mean class score of the priors inside the boxes to explain.

    The gradient-based target. A detector scores a box on every level; the final box comes
    from one of them after NMS, so its score alone gives no gradient to the other levels.
    Scoring every prior whose centre lies inside the box lets a target layer on any level
    (the default: the stride-32 neck output) show which of its features make that level see
    a balloon there.
    """

    def __init__(self, bboxes: torch.Tensor, labels: torch.Tensor) -> None:
        self.bboxes, self.labels = bboxes, labels

    def __call__(self, levels: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        total = 0
        for priors, scores in levels:
            cx, cy = priors[:, 0:1], priors[:, 1:2]
            b = self.bboxes.to(priors.device)
            inside = (cx >= b[:, 0]) & (cx <= b[:, 2]) & (cy >= b[:, 1]) & (cy <= b[:, 3])  # (P, K)
            per_box = scores[:, self.labels.to(priors.device)]  # (P, K)
            total = total + (per_box * inside).sum() / inside.sum().clamp(min=1)
        return total


class BoxScoreTarget:
    """Sum over the boxes to explain of (IoU + score) of their best-matching prediction."""

    def __init__(self, bboxes: torch.Tensor, labels: torch.Tensor, iou_threshold: float = 0.5) -> None:
        self.bboxes, self.labels, self.iou_threshold = bboxes, labels, iou_threshold

    def __call__(self, pred: InstanceData) -> torch.Tensor:
        from torchvision.ops import box_iou

        total = pred.scores.sum() * 0  # keeps the graph (and the device) when nothing matches
        if len(pred.bboxes) == 0:
            return total
        ious = box_iou(self.bboxes.to(pred.bboxes.device), pred.bboxes)
        for box_ious, label in zip(ious, self.labels):
            box_ious = torch.where(pred.labels == label, box_ious, torch.zeros_like(box_ious))
            best = box_ious.argmax()
            if box_ious[best] > self.iou_threshold:
                total = total + box_ious[best] + pred.scores[best]
        return total


def fpn_reshape_transform(outputs: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """Several feature maps (N, C_i, H_i, W_i) -> one (N, sum C_i, H_max, W_max)."""
    if isinstance(outputs, torch.Tensor):
        return outputs
    size = max((o.shape[-2:] for o in outputs), key=lambda s: s[0] * s[1])
    return torch.cat([torch.nn.functional.interpolate(o.abs(), size=tuple(size), mode="bilinear") for o in outputs], 1)


def prepare_input(model: BaseDetector, image: str | Path | np.ndarray) -> tuple[torch.Tensor, DetDataSample]:
    """The detector's test pipeline and preprocessing: (input batch of 1, data sample).

    ``image`` is a file or an RGB array as ``io.read_image`` returns it (the file is then not read again).
    """
    from mmcv.transforms import Compose
    from mmdet.utils import get_test_pipeline_cfg

    pipeline = copy.deepcopy(get_test_pipeline_cfg(model.cfg))
    if isinstance(image, np.ndarray):
        pipeline[0].type = "mmdet.LoadImageFromNDArray"  # what inference_detector does for arrays
        data = dict(img=np.ascontiguousarray(image[..., ::-1]), img_id=0)  # the loader's BGR
    else:
        read_image(image)  # a clear error for unreadable files before the pipeline fails obscurely
        data = dict(img_path=str(image), img_id=0)
    data = Compose(pipeline)(data)
    data = model.data_preprocessor({"inputs": [data["inputs"]], "data_samples": [data["data_samples"]]}, False)
    return data["inputs"], data["data_samples"][0]


def run_cam(cam_class: type, model: torch.nn.Module, layers: list[torch.nn.Module], inputs: torch.Tensor,
            targets: list, **kwargs: Any) -> np.ndarray:
    """``cam_class(model, layers)(inputs, targets)[0]``: the first image's map, scaled to [0, 1].

    grad-cam's ``BaseCAM.__exit__`` swallows an ``IndexError`` raised inside its ``with``
    block (it prints one line and carries on), so the map would be missing without an error.
    Every error is caught inside the block and raised again after it.
    """
    error: BaseException | None = None
    with cam_class(model, layers, reshape_transform=fpn_reshape_transform, **kwargs) as cam_fn:
        try:
            heatmap = cam_fn(inputs, targets=targets)[0]
        except Exception as err:  # noqa: BLE001  (raised below, after grad-cam released its hooks)
            error = err
    if error is not None:
        raise error
    return heatmap


def renormalize_in_boxes(heatmap: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Zero outside the boxes, min-max normalised inside each box (pytorch-grad-cam's recipe)."""
    out = np.zeros_like(heatmap)
    for x1, y1, x2, y2 in boxes.round().astype(int):
        x1, y1 = max(x1, 0), max(y1, 0)
        patch = heatmap[y1:y2, x1:x2]
        if patch.size:
            lo, hi = patch.min(), patch.max()
            out[y1:y2, x1:x2] = np.maximum(out[y1:y2, x1:x2], (patch - lo) / (hi - lo + 1e-7))
    return out


def inside_outside_ratio(heatmap: np.ndarray, boxes: np.ndarray) -> float:
    """Mean CAM inside the boxes over mean CAM outside them (1 = no preference).

    ``nan`` when the ratio is undefined: the boxes cover the whole image (nothing outside) or
    none of it. A map that is zero everywhere outside gives a very large finite ratio.
    """
    mask = np.zeros(heatmap.shape, bool)
    for x1, y1, x2, y2 in boxes.round().astype(int):
        mask[max(y1, 0):y2, max(x1, 0):x2] = True
    if mask.all() or not mask.any():
        return math.nan
    return float(heatmap[mask].mean() / max(heatmap[~mask].mean(), 1e-7))


def format_focus(focus: float) -> str:
    return "n/a (the boxes cover the whole image)" if math.isnan(focus) else f"{focus:.2f}"


def box_cam(model: BaseDetector, image: str | Path, method: str = defaults.CAM_METHOD,
            target_layer: str | Sequence[str] = defaults.CAM_LAYER, topk: int = defaults.CAM_TOPK,
            score_thr: float = defaults.SCORE_THR, norm_in_bbox: bool = False) -> CamResult:
    """CAM for the top predicted boxes of one image (the image file is read once)."""
    import mmcv

    methods = cam_methods()
    if method not in methods:
        raise ConfigError(f"unknown CAM method {method!r}: choose {', '.join(methods)}")
    names = [target_layer] if isinstance(target_layer, str) else list(target_layer)
    layers = [get_layer(model, name) for name in names]
    img = read_image(image)
    inputs, sample = prepare_input(model, img)
    wrapper = DetectorWrapper(model, sample)
    with torch.no_grad():
        pred = wrapper(inputs)[0]
    best = float(pred.scores.max()) if len(pred) else 0.0
    keep = (pred.scores >= score_thr).nonzero().flatten()[:topk]  # predictions come sorted by score
    pred = pred[keep]
    if len(pred) == 0:
        raise DataError(f"{image}: no predicted box with score >= {score_thr} to explain "
                        f"(best score {best:.3f}); lower --score-thr")
    bboxes = pred.bboxes.detach()
    if method in GRADIENT_METHODS:  # class scores of the priors inside the boxes, on every level
        wrapper, targets = DetectorWrapper(model, sample, mode="dense"), [PriorScoreTarget(bboxes, pred.labels)]
    else:  # gradient-free: how the matched final predictions' scores change (EigenCAM ignores it)
        targets = [BoxScoreTarget(bboxes, pred.labels)]
    kwargs = {"batch_size": 16} if method == "ablationcam" else {}
    heatmap = run_cam(methods[method], wrapper, layers, inputs, targets, **kwargs)  # padded input size
    h, w = sample.metainfo["img_shape"]
    heatmap = mmcv.imresize(heatmap[:h, :w], (img.shape[1], img.shape[0]))
    scale = np.array(sample.metainfo["scale_factor"] * 2, dtype=np.float32)
    boxes = bboxes.cpu().numpy() / scale
    if norm_in_bbox:
        heatmap = renormalize_in_boxes(heatmap, boxes)
    return CamResult(heatmap=np.clip(heatmap, 0, 1), boxes=boxes, scores=pred.scores.detach().cpu().numpy(),
                     labels=pred.labels.cpu().numpy(), image=img, method=method, layer="+".join(names),
                     image_path=Path(image))


def plot_cam(result: CamResult, classes: Sequence[str] = ("balloon",), out: str | Path | None = None) -> Figure:
    """Two panels: the detections, and the CAM overlay with the same boxes."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle
    from pytorch_grad_cam.utils.image import show_cam_on_image

    img = result.image
    overlay = show_cam_on_image(img.astype(np.float32) / 255, result.heatmap, use_rgb=True, image_weight=0.5)
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.2 * img.shape[0] / img.shape[1] + 0.8))
    for ax, shown in zip(axes, (img, overlay)):
        ax.imshow(shown)
        for (x1, y1, x2, y2), score, label in zip(result.boxes, result.scores, result.labels):
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor="lime", lw=2))
            ax.text(x1, y1 - 3, f"{classes[label]} {score:.2f}", color="black", fontsize=8,
                    bbox=dict(facecolor="lime", alpha=0.8, pad=1, lw=0))
        ax.axis("off")
    axes[0].set_title(f"{len(result.boxes)} predicted box(es) to explain")
    axes[1].set_title(f"{result.method} on {result.layer} (target: scores inside those boxes)")
    fig.tight_layout()
    return save_figure(fig, out, dpi=80)


def cam(config: str | Path, checkpoint: str | Path | None, image: str | Path, method: str = defaults.CAM_METHOD,
        target_layer: str | Sequence[str] = defaults.CAM_LAYER, topk: int = defaults.CAM_TOPK,
        score_thr: float = defaults.SCORE_THR, norm_in_bbox: bool = False,
        out: str | Path | None = f"{defaults.FIGURES_DIR}/{defaults.CAM_FIGURE}", device: str = defaults.DEVICE,
        model: BaseDetector | None = None) -> list[CamResult]:
    """Box AM for an image or a folder: one ``CamResult`` (with its ``figure``) per image explained.

    For one image, the figure goes to the file ``out``. For a folder, ``out`` is a folder that
    gets one figure per image; images without a box above ``score_thr`` are skipped, and the
    focus of each map (mean CAM inside the boxes / outside) is printed with the median.
    """
    if method not in CAM_METHODS:  # before the model loads
        raise ConfigError(f"unknown CAM method {method!r}: choose {', '.join(CAM_METHODS)}")
    model = model or load_model(config, checkpoint, device)
    classes = model.dataset_meta["classes"]
    if not Path(image).is_dir():
        result = box_cam(model, image, method, target_layer, topk, score_thr, norm_in_bbox)
        result.figure = plot_cam(result, classes, out)
        if out is not None:
            print(f"wrote {out} ({len(result.boxes)} box(es) explained, focus {format_focus(result.focus)})")
        return [result]
    results = []
    for path in list_images(image):
        try:
            result = box_cam(model, path, method, target_layer, topk, score_thr, norm_in_bbox)
        except DataError as err:
            print(f"{path.name}: skipped ({err})")
            continue
        result.figure = plot_cam(result, classes, Path(out) / f"{path.stem}.png" if out is not None else None)
        print(f"{path.name}: {len(result.boxes)} box(es), focus {format_focus(result.focus)}")
        results.append(result)
    focus = np.array([r.focus for r in results])
    focus = focus[~np.isnan(focus)]
    if len(focus):
        layer = results[0].layer
        print(f"{method} on {layer}: median focus {np.median(focus):.2f} over {len(focus)} images "
              f"({np.mean(focus > 1):.0%} above 1; 1 = no preference for the boxes)"
              + (f"; {len(results) - len(focus)} image(s) without a defined focus" if len(focus) < len(results)
                 else ""))
    return results
