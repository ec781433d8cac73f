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

The default layer is the neck's smallest output scale (stride 32): in mmdet's
CSPNeXtPAFPN that is ``neck.out_convs.2`` (mmyolo calls it ``out_layers``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .featmap import get_layer
from .io import BalloonDataError, save_figure
from .model import load_model

DEFAULT_LAYER = "neck.out_convs.2"
GRADIENT_METHODS = ("gradcam", "gradcam++")


def cam_methods() -> dict:
    from pytorch_grad_cam import AblationCAM, EigenCAM, GradCAM, GradCAMPlusPlus

    return {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus, "eigencam": EigenCAM, "ablationcam": AblationCAM}


class DetectorWrapper(torch.nn.Module):
    """Preprocessed images in, the detector's own outputs out, one entry per image.

    ``predict``: the final predictions (``InstanceData``: bboxes in input pixels, scores,
    labels), after NMS, with gradients. ``dense``: per pyramid level, the priors and the
    class scores of every prior, before any filtering.
    """

    def __init__(self, detector, data_sample, mode: str = "predict"):
        super().__init__()
        self.detector = detector
        self.data_sample = data_sample  # geometry of the input (img_shape, pad_shape, ...)
        self.mode = mode

    def forward(self, inputs: torch.Tensor):
        from mmdet.models.utils import select_single_mlvl

        head = self.detector.bbox_head
        feats = self.detector.extract_feat(inputs)
        cls_scores, bbox_preds = head(feats)
        priors = head.prior_generator.grid_priors([c.shape[-2:] for c in cls_scores], dtype=cls_scores[0].dtype,
                                                  device=cls_scores[0].device)
        if self.mode == "dense":  # every prior's class scores, per level: (priors (P, 2+), scores (P, classes))
            return [[(p, c[i].permute(1, 2, 0).reshape(-1, c.shape[1]).sigmoid()) for p, c in zip(priors, cls_scores)]
                    for i in range(len(inputs))]
        # mmdet's predict_by_feat detaches the head outputs; this is its per-image loop, without detach
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

    def __init__(self, bboxes: torch.Tensor, labels: torch.Tensor):
        self.bboxes, self.labels = bboxes, labels

    def __call__(self, levels) -> torch.Tensor:
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

    def __init__(self, bboxes: torch.Tensor, labels: torch.Tensor, iou_threshold: float = 0.5):
        self.bboxes, self.labels, self.iou_threshold = bboxes, labels, iou_threshold

    def __call__(self, pred) -> torch.Tensor:
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


def fpn_reshape_transform(outputs):
    """Several feature maps (N, C_i, H_i, W_i) -> one (N, sum C_i, H_max, W_max)."""
    if isinstance(outputs, torch.Tensor):
        return outputs
    size = max((o.shape[-2:] for o in outputs), key=lambda s: s[0] * s[1])
    return torch.cat([torch.nn.functional.interpolate(o.abs(), size=tuple(size), mode="bilinear") for o in outputs], 1)


def prepare_input(model, image):
    """The detector's test pipeline and preprocessing: (input batch of 1, data sample)."""
    from mmcv.transforms import Compose
    from mmdet.utils import get_test_pipeline_cfg

    from .predict import read_image

    read_image(image)  # a clear error for unreadable files before the pipeline fails obscurely
    data = Compose(get_test_pipeline_cfg(model.cfg))(dict(img_path=str(image), img_id=0))
    data = model.data_preprocessor({"inputs": [data["inputs"]], "data_samples": [data["data_samples"]]}, False)
    return data["inputs"], data["data_samples"][0]


def renormalize_in_boxes(cam: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Zero outside the boxes, min-max normalised inside each box (pytorch-grad-cam's recipe)."""
    out = np.zeros_like(cam)
    for x1, y1, x2, y2 in boxes.round().astype(int):
        x1, y1 = max(x1, 0), max(y1, 0)
        patch = cam[y1:y2, x1:x2]
        if patch.size:
            lo, hi = patch.min(), patch.max()
            out[y1:y2, x1:x2] = np.maximum(out[y1:y2, x1:x2], (patch - lo) / (hi - lo + 1e-7))
    return out


def box_cam(model, image, method="gradcam", target_layer=DEFAULT_LAYER, topk=5, score_thr=0.3,
            norm_in_bbox=False):
    """CAM for the top predicted boxes of one image.

    Returns a dict with ``cam`` (H, W) in [0, 1] at the original image size, ``boxes``
    (K, 4, original pixels), ``scores``, ``labels``, the ``image`` (RGB) and the settings.
    """
    import mmcv

    from .predict import read_image

    methods = cam_methods()
    if method not in methods:
        raise BalloonDataError(f"unknown CAM method {method!r}: choose {', '.join(methods)}")
    layers = [get_layer(model, name) for name in ([target_layer] if isinstance(target_layer, str) else target_layer)]
    inputs, sample = prepare_input(model, image)
    wrapper = DetectorWrapper(model, sample)
    with torch.no_grad():
        pred = wrapper(inputs)[0]
    best = float(pred.scores.max()) if len(pred) else 0.0
    keep = (pred.scores >= score_thr).nonzero().flatten()[:topk]  # predictions come sorted by score
    pred = pred[keep]
    if len(pred) == 0:
        raise BalloonDataError(f"{image}: no predicted box with score >= {score_thr} to explain "
                               f"(best score {best:.3f}); lower --score-thr")
    if method in GRADIENT_METHODS:  # class scores of the priors inside the boxes, on every level
        wrapper, targets = DetectorWrapper(model, sample, mode="dense"), [PriorScoreTarget(pred.bboxes.detach(), pred.labels)]
    else:  # gradient-free: how the matched final predictions' scores change (EigenCAM ignores it)
        targets = [BoxScoreTarget(pred.bboxes.detach(), pred.labels)]
    kwargs = {"batch_size": 16} if method == "ablationcam" else {}
    with methods[method](wrapper, layers, reshape_transform=fpn_reshape_transform, **kwargs) as cam_fn:
        cam = cam_fn(inputs, targets=targets)[0]  # (H, W) of the padded input, scaled to [0, 1]
    h, w = sample.metainfo["img_shape"]
    img = read_image(image)
    cam = mmcv.imresize(cam[:h, :w], (img.shape[1], img.shape[0]))
    scale = np.array(sample.metainfo["scale_factor"] * 2, dtype=np.float32)
    boxes = pred.bboxes.detach().cpu().numpy() / scale
    if norm_in_bbox and len(boxes):
        cam = renormalize_in_boxes(cam, boxes)
    return {"cam": np.clip(cam, 0, 1), "boxes": boxes, "scores": pred.scores.detach().cpu().numpy(),
            "labels": pred.labels.cpu().numpy(), "image": img, "method": method,
            "layer": target_layer if isinstance(target_layer, str) else "+".join(target_layer)}


def plot_cam(result: dict, classes=("balloon",), out=None):
    """Two panels: the detections, and the CAM overlay with the same boxes."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle
    from pytorch_grad_cam.utils.image import show_cam_on_image

    img = result["image"]
    overlay = show_cam_on_image(img.astype(np.float32) / 255, result["cam"], use_rgb=True, image_weight=0.5)
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.2 * img.shape[0] / img.shape[1] + 0.8))
    for ax, shown in zip(axes, (img, overlay)):
        ax.imshow(shown)
        for (x1, y1, x2, y2), score, label in zip(result["boxes"], result["scores"], result["labels"]):
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor="lime", lw=2))
            ax.text(x1, y1 - 3, f"{classes[label]} {score:.2f}", color="black", fontsize=8,
                    bbox=dict(facecolor="lime", alpha=0.8, pad=1, lw=0))
        ax.axis("off")
    axes[0].set_title(f"{len(result['boxes'])} predicted box(es) to explain")
    axes[1].set_title(f"{result['method']} on {result['layer']} (target: scores inside those boxes)")
    fig.tight_layout()
    return save_figure(fig, out, dpi=80)


def cam(config, checkpoint, image, method="gradcam", target_layer=DEFAULT_LAYER, topk=5, score_thr=0.3,
        norm_in_bbox=False, out="figures/grad_visualization.png", device="auto", model=None):
    """Box AM for ``image``: computes the CAM, saves the figure to ``out``, returns the result.

    ``image`` may be a folder: then ``out`` is a folder that gets one figure per image, and
    the focus of each map (mean CAM inside the boxes / outside) is printed with the median;
    returns the list of results. Images without a box above ``score_thr`` are skipped.
    """
    from .predict import list_images

    model = model or load_model(config, checkpoint, device)
    classes = model.dataset_meta["classes"]
    if not Path(image).is_dir():
        result = box_cam(model, image, method, target_layer, topk, score_thr, norm_in_bbox)
        result["figure"] = plot_cam(result, classes, out)
        if out is not None:
            print(f"wrote {out} ({len(result['boxes'])} box(es) explained, "
                  f"focus {inside_outside_ratio(result['cam'], result['boxes']):.2f})")
        return result
    results, focus = [], []
    for path in list_images(image):
        try:
            result = box_cam(model, path, method, target_layer, topk, score_thr, norm_in_bbox)
        except BalloonDataError as err:
            print(f"{path.name}: skipped ({err})")
            continue
        plot_cam(result, classes, Path(out) / f"{path.stem}.png" if out is not None else None)
        focus.append(inside_outside_ratio(result["cam"], result["boxes"]))
        print(f"{path.name}: {len(result['boxes'])} box(es), focus {focus[-1]:.2f}")
        results.append(result)
    if focus:
        print(f"{method} on {target_layer}: median focus {np.median(focus):.2f} over {len(focus)} images "
              f"({np.mean(np.array(focus) > 1):.0%} above 1; 1 = no preference for the boxes)")
    return results


def inside_outside_ratio(cam: np.ndarray, boxes: np.ndarray) -> float:
    """Mean CAM inside the boxes over mean CAM outside them (1 = no preference)."""
    mask = np.zeros(cam.shape, bool)
    for x1, y1, x2, y2 in boxes.round().astype(int):
        mask[max(y1, 0):y2, max(x1, 0):x2] = True
    if mask.all() or not mask.any():
        raise ValueError("boxes cover all or none of the image; the ratio is undefined")
    return float(cam[mask].mean() / max(cam[~mask].mean(), 1e-7))
