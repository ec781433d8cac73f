"""The `cam` step: Grad-CAM "box AM" for a detector, built from grad-cam's small pieces.

- ``DetectorWrapper``: a ``torch.nn.Module`` that maps a preprocessed batch to the
  detector's own outputs (final predictions, or every prior's class scores), which is
  what grad-cam's CAM classes call.
- ``PriorScoreTarget`` (the gradient methods): the class score of the priors inside the
  boxes to explain, on every pyramid level, so the map explains those boxes at the target
  layer's own scale. The boxes need not be predictions: a missed ground-truth box works too.
- ``BoxScoreTarget`` (AblationCAM): for every box, IoU + score of the final prediction
  that matches it best; the drop of that value measures a channel's importance.
- ``spatial_cam_classes``: mmyolo's spatial Grad-CAM and Grad-CAM++ (``SpatialBaseCAM`` in
  mmyolo/utils/boxam_utils.py): each activation weighted by its own gradient, not by the
  channel's mean gradient. grad-cam's ``LayerCAM`` is the same idea with the gradient's ReLU.
- ``select_targets``: the boxes to explain: the predictions (``predicted``), the
  ground-truth boxes no prediction found (``missed``), or the predictions that match no
  ground-truth box (``false-positive``); ``ground_truth`` reads them from the COCO json.
- ``fpn_reshape_transform``: for target layers with several outputs (e.g. the whole neck),
  resizes every scale to the largest and stacks the channels.
- ``CAM_METHODS``: the methods by name (the CLI's choices come from here). ``drise`` (drise.DRISE,
  D-RISE) is black-box: no layer (its layer is ``image``), masked copies of the image through the detector.

The default layer is the neck's smallest output scale (stride 32): in mmdet's
CSPNeXtPAFPN that is ``neck.out_convs.2`` (mmyolo calls it ``out_layers``).
"""
from __future__ import annotations

import copy
import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from . import defaults
from .cocostats import load_json, match_image
from .errors import ConfigError, DataError
from .io import display_path, list_images, read_image, save_figure
from .model import get_layer, load_model

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from mmdet.models.detectors import BaseDetector
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData

# name -> class: pytorch_grad_cam's, or spatial_cam_classes()'s. GRADIENT_METHODS explain PriorScoreTarget;
# the others (gradient-free) BoxScoreTarget. randomcam (random channel weights) is a baseline for cam-eval.
CAM_METHODS = {"gradcam": "GradCAM", "gradcam++": "GradCAMPlusPlus", "spatial-gradcam": "SpatialGradCAM",
               "spatial-gradcam++": "SpatialGradCAMPlusPlus", "layercam": "LayerCAM", "eigencam": "EigenCAM",
               "ablationcam": "AblationCAM", "randomcam": "RandomCAM", "drise": "DRISE"}
GRADIENT_METHODS = ("gradcam", "gradcam++", "spatial-gradcam", "spatial-gradcam++", "layercam", "randomcam")
LAYERLESS_METHODS = ("drise",)  # black-box: explain the image, not a layer (their layer reads IMAGE_LAYER)
IMAGE_LAYER = "image"
CAM_TARGETS = defaults.CAM_TARGETS


@functools.cache
def spatial_cam_classes() -> dict[str, type]:
    """Grad-CAM and Grad-CAM++ that keep the gradient's spatial layout (mmyolo's ``SpatialBaseCAM``).

    Stock Grad-CAM weights a channel by its gradient averaged over the whole map, which suits
    one class score per image; a detector's box score depends on a few cells, and the average
    smears them over the image. Built on first use: importing grad-cam takes seconds.
    """
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
    from pytorch_grad_cam.base_cam import BaseCAM
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

    class SpatialBaseCAM(BaseCAM):
        """``get_cam_weights`` returns one weight per activation (N, C, H, W), not per channel."""

        def get_cam_image(self, input_tensor: torch.Tensor, target_layer: torch.nn.Module, targets: list,
                          activations: np.ndarray, grads: np.ndarray, eigen_smooth: bool = False) -> np.ndarray:
            weighted = self.get_cam_weights(input_tensor, target_layer, targets, activations, grads) * activations
            return get_2d_projection(weighted) if eigen_smooth else weighted.sum(axis=1)

    class SpatialGradCAM(SpatialBaseCAM, GradCAM):
        def get_cam_weights(self, input_tensor: torch.Tensor, target_layer: torch.nn.Module, targets: list,
                            activations: np.ndarray, grads: np.ndarray) -> np.ndarray:
            return grads

    class SpatialGradCAMPlusPlus(SpatialBaseCAM, GradCAMPlusPlus):
        def get_cam_weights(self, input_tensor: torch.Tensor, target_layer: torch.nn.Module, targets: list,
                            activations: np.ndarray, grads: np.ndarray) -> np.ndarray:
            # grad-cam's Grad-CAM++ weights (eq. 19 of arXiv:1710.11063) before its sum over the pixels
            grads2 = grads**2
            alpha = grads2 / (2 * grads2 + activations.sum(axis=(2, 3), keepdims=True) * grads2 * grads + 1e-6)
            return np.where(grads != 0, alpha, 0) * np.maximum(grads, 0)

    return {cls.__name__: cls for cls in (SpatialGradCAM, SpatialGradCAMPlusPlus)}


def cam_methods() -> dict[str, type]:
    """``CAM_METHODS`` with their classes."""
    import pytorch_grad_cam

    from .drise import DRISE

    classes = {**vars(pytorch_grad_cam), **spatial_cam_classes(), "DRISE": DRISE}
    return {name: classes[cls] for name, cls in CAM_METHODS.items()}


def check_method(method: str) -> None:
    if method not in CAM_METHODS:
        raise ConfigError(f"unknown CAM method {method!r}: choose {', '.join(CAM_METHODS)}")


@dataclass
class CamResult:
    """The CAM of one image's boxes to explain, in original image pixels."""

    heatmap: np.ndarray  # (H, W) in [0, 1]
    boxes: np.ndarray  # (K, 4) x1, y1, x2, y2: the boxes explained
    scores: np.ndarray  # (K,) their scores (missed boxes: the best score the model gives there, 0 if none)
    labels: np.ndarray  # (K,)
    image: np.ndarray  # (H, W, 3) RGB uint8
    method: str
    layer: str  # target layer name(s), "+"-joined
    image_path: Path | None = None
    figure: Figure | None = None  # set by cam()
    target: str = defaults.CAM_TARGET  # which boxes: predicted, missed or false-positive

    @property
    def focus(self) -> float:
        """``inside_outside_ratio`` of the map: > 1 when the map prefers the boxes, nan if undefined."""
        return inside_outside_ratio(self.heatmap, self.boxes)


class NoTargetError(DataError):
    """The image has no box of the kind asked for (``target``) to explain."""


class DetectorWrapper(torch.nn.Module):
    """Preprocessed images in, the detector's own outputs out, one entry per image.

    ``predict``: the final predictions (``InstanceData``: bboxes in input pixels, scores,
    labels), after NMS, with gradients. ``dense``: per pyramid level, the priors and the
    class scores of every prior, before any filtering. ``with_nms=False``: the predictions before NMS
    (the test config's score floor and top-k per level only).
    """

    def __init__(self, detector: BaseDetector, data_sample: DetDataSample, mode: str = "predict",
                 test_cfg: dict | None = None, with_nms: bool = True) -> None:
        super().__init__()
        self.detector = detector
        self.data_sample = data_sample  # geometry of the input (img_shape, pad_shape, ...)
        self.mode = mode
        self.with_nms = with_nms
        self.test_cfg = test_cfg or detector.bbox_head.test_cfg  # post-processing (NMS) settings

    def forward(self, inputs: torch.Tensor) -> list:
        from mmdet.models.utils import select_single_mlvl

        head = self.detector.bbox_head
        feats = self.detector.extract_feat(inputs)
        cls_scores, bbox_preds = head(feats)
        # under bf16 autocast (cam_eval's scoring passes) the boxes are decoded in fp32; a no-op otherwise
        cls_scores, bbox_preds = [c.float() for c in cls_scores], [b.float() for b in bbox_preds]
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
                img_meta=self.data_sample.metainfo, cfg=self.test_cfg, rescale=False, with_nms=self.with_nms)
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


def best_match(bboxes: torch.Tensor, labels: torch.Tensor, other_bboxes: torch.Tensor,
               other_labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each box, ``(IoU, index)`` of the same-label other box that overlaps it most (IoU 0 if none).

    Differentiable in ``other_bboxes`` (BoxScoreTarget's gradient-free methods need no gradient,
    but the graph must stay intact).
    """
    from torchvision.ops import box_iou

    if len(other_bboxes) == 0 or len(bboxes) == 0:
        zeros = torch.zeros(len(bboxes), device=bboxes.device)
        return zeros, zeros.long()
    ious = box_iou(bboxes.to(other_bboxes.device), other_bboxes)
    ious = torch.where(labels.to(other_labels.device)[:, None] == other_labels[None], ious, torch.zeros_like(ious))
    return ious.max(dim=1)


def matched_scores(bboxes: torch.Tensor, labels: torch.Tensor, pred: InstanceData,
                   iou_threshold: float = defaults.IOU_MATCH) -> torch.Tensor:
    """For each box, the score of its best-matching prediction (``best_match``), 0 below ``iou_threshold``."""
    iou, index = best_match(bboxes, labels, pred.bboxes, pred.labels)
    if len(pred) == 0:
        return iou
    return torch.where(iou > iou_threshold, pred.scores[index], torch.zeros_like(iou))


class BoxScoreTarget:
    """Sum over the boxes to explain of (IoU + score) of their best-matching prediction."""

    def __init__(self, bboxes: torch.Tensor, labels: torch.Tensor, iou_threshold: float = defaults.IOU_MATCH) -> None:
        self.bboxes, self.labels, self.iou_threshold = bboxes, labels, iou_threshold

    def __call__(self, pred: InstanceData) -> torch.Tensor:
        total = pred.scores.sum() * 0  # keeps the graph (and the device) when nothing matches
        if len(pred.bboxes) == 0:
            return total
        iou, index = best_match(self.bboxes, self.labels, pred.bboxes, pred.labels)
        matched = iou > self.iou_threshold
        return total + (iou + pred.scores[index])[matched].sum()


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


def check_target(target: str) -> None:
    if target not in CAM_TARGETS:
        raise ConfigError(f"unknown CAM target {target!r}: choose {', '.join(CAM_TARGETS)}")


def find_annotations(image: str | Path) -> Path:
    """The COCO json of ``image``'s split: ROOT/val/x.jpg -> ROOT/val.json (the data step's layout)."""
    image = Path(image)
    return image.parent.parent / f"{image.parent.name}.json"


def ground_truth(image: str | Path, classes: Sequence[str],
                 ann_file: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The annotated boxes of ``image``: (K, 4) x1, y1, x2, y2 in image pixels, and labels (indices into ``classes``).

    ``ann_file`` defaults to ``find_annotations(image)``; the image is found by file name.
    """
    image = Path(image)
    ann_file = Path(ann_file) if ann_file is not None else find_annotations(image)
    if not ann_file.is_file():
        raise DataError(f"{image}: no annotations to compare with (no {ann_file}; give the COCO json as ann_file)")
    coco = load_json(ann_file, "the split's COCO json")
    ids = [entry["id"] for entry in coco.get("images", []) if Path(entry["file_name"]).name == image.name]
    if not ids:
        raise DataError(f"{image}: no entry for {image.name} in {ann_file}'s images")
    names = {c["id"]: c["name"] for c in coco.get("categories", [])}
    boxes, labels = [], []
    for ann in coco.get("annotations", []):
        if ann["image_id"] != ids[0] or ann.get("iscrowd"):
            continue
        name = names.get(ann["category_id"])
        if name not in classes:
            raise DataError(f"{ann_file}: annotation {ann.get('id')} of {image.name} has category {name!r}, "
                            f"not one of the model's classes ({', '.join(classes)})")
        x, y, w, h = ann["bbox"]
        boxes.append([x, y, x + w, y + h])
        labels.append(list(classes).index(name))
    if not boxes:
        raise DataError(f"{image}: no annotated box in {ann_file}")
    return np.array(boxes, np.float32).reshape(-1, 4), np.array(labels, np.int64)


def predict_boxes(model: BaseDetector, inputs: torch.Tensor, sample: DetDataSample) -> InstanceData:
    """Every prediction the head keeps (its test_cfg, after NMS), in input pixels, sorted by score."""
    with torch.no_grad():
        return DetectorWrapper(model, sample)(inputs)[0]


def select_targets(pred: InstanceData, target: str = defaults.CAM_TARGET, score_thr: float = defaults.SCORE_THR,
                   topk: int = defaults.CAM_TOPK, gt: tuple[torch.Tensor, torch.Tensor] | None = None,
                   iou_threshold: float = defaults.IOU_MATCH) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The boxes to explain, at most ``topk``: ``(bboxes, labels, scores)`` in ``pred``'s pixels.

    ``predicted``: the predictions with score >= ``score_thr``. ``missed``: the boxes of ``gt``
    (boxes, labels) that no such prediction matches (``match_one_to_one``, as the ground-truth-vs-prediction
    figure counts them); their score is what the best-matching prediction of any score gives there (0 if
    none). ``false-positive``: the predictions >= ``score_thr`` that match no box of ``gt``.
    """
    check_target(target)
    confident = pred[pred.scores >= score_thr]  # predictions come sorted by score
    if target == "predicted":
        chosen = confident[:topk]
        return chosen.bboxes, chosen.labels, chosen.scores
    if gt is None:
        raise ConfigError(f"the {target!r} target needs the ground-truth boxes")
    gt_boxes, gt_labels = (t.to(pred.bboxes.device) for t in gt)
    hit, taken = match_one_to_one(gt_boxes, gt_labels, confident, iou_threshold)
    if target == "missed":
        missed = ~taken.to(gt_boxes.device)
        scores = matched_scores(gt_boxes, gt_labels, pred, iou_threshold)
        return gt_boxes[missed][:topk], gt_labels[missed][:topk], scores[missed][:topk]
    wrong = confident[~hit.to(confident.bboxes.device)][:topk]
    return wrong.bboxes, wrong.labels, wrong.scores


def match_one_to_one(gt_boxes: torch.Tensor, gt_labels: torch.Tensor, pred: InstanceData,
                     iou_threshold: float = defaults.IOU_MATCH) -> tuple[torch.Tensor, torch.Tensor]:
    """COCO's matching, the same as the ground-truth-vs-prediction figure's (``cocostats.match_image``), per
    label: each prediction, highest score first, takes the unmatched box it overlaps most at IoU >=
    ``iou_threshold``. Returns (per prediction: matched?, per box: matched?), so that a second prediction
    on a found balloon is a false positive and two balloons under one box leave one missed."""
    def xywh(box: torch.Tensor) -> list[float]:
        x1, y1, x2, y2 = box.tolist()
        return [x1, y1, x2 - x1, y2 - y1]

    hit = torch.zeros(len(pred), dtype=torch.bool)
    taken = torch.zeros(len(gt_boxes), dtype=torch.bool)
    for label in set(gt_labels.tolist()) | set(pred.labels.tolist()):
        gts = [{"bbox": xywh(gt_boxes[i]), "index": i} for i in (gt_labels == label).nonzero().flatten().tolist()]
        dets = [{"bbox": xywh(pred.bboxes[i]), "score": float(pred.scores[i]), "index": i}
                for i in (pred.labels == label).nonzero().flatten().tolist()]
        hits, matched, _ = match_image(gts, dets, iou_threshold)
        for det, matched_det in zip(sorted(dets, key=lambda d: -d["score"]), hits):  # match_image's order
            hit[det["index"]] = matched_det
        for box in matched:
            taken[box["index"]] = True
    return hit, taken


def no_target_message(image: str | Path, target: str, n_confident: int, n_gt: int, best: float,
                      score_thr: float) -> str:
    if target == "missed":
        return (f"{image}: no missed box: each of its {n_gt} annotated box(es) has a prediction with "
                f"score >= {score_thr} at IoU >= {defaults.IOU_MATCH}")
    if target == "false-positive" and n_confident:
        return (f"{image}: no false positive: each of its {n_confident} prediction(s) with score >= {score_thr} "
                f"matches an annotated box at IoU >= {defaults.IOU_MATCH}")
    return f"{image}: no predicted box with score >= {score_thr} to explain (best score {best:.3f}); lower --score-thr"


def explain(model: BaseDetector, inputs: torch.Tensor, sample: DetDataSample, bboxes: torch.Tensor,
            labels: torch.Tensor, method: str = defaults.CAM_METHOD,
            target_layer: str | Sequence[str] = defaults.CAM_LAYER, seed: int = defaults.DRISE_SEED) -> np.ndarray:
    """The map of a prepared input (``prepare_input``) for boxes in input pixels.

    Returns the (h, w) map of the resized image (``img_shape``, the padding cut off), in [0, 1].
    D-RISE ignores ``target_layer`` and draws its masks with ``seed``.
    """
    check_method(method)
    if method in LAYERLESS_METHODS:
        return explain_drise(model, inputs, sample, bboxes, labels, seed=seed)
    names = [target_layer] if isinstance(target_layer, str) else list(target_layer)
    layers = [get_layer(model, name) for name in names]
    if method in GRADIENT_METHODS:  # class scores of the priors inside the boxes, on every level
        wrapper, targets = DetectorWrapper(model, sample, mode="dense"), [PriorScoreTarget(bboxes, labels)]
    else:  # gradient-free: how the matched final predictions' scores change (EigenCAM ignores it)
        wrapper, targets = DetectorWrapper(model, sample), [BoxScoreTarget(bboxes, labels)]
    kwargs = {"batch_size": 16} if method == "ablationcam" else {}
    heatmap = run_cam(cam_methods()[method], wrapper, layers, inputs, targets, **kwargs)  # padded input size
    h, w = sample.metainfo["img_shape"]
    return heatmap[:h, :w]


def explain_drise(model: BaseDetector, inputs: torch.Tensor, sample: DetDataSample, bboxes: torch.Tensor,
                  labels: torch.Tensor, n_masks: int | None = None, seed: int = defaults.DRISE_SEED) -> np.ndarray:
    """D-RISE's (h, w) map: the detections before NMS (every prior that sees the box counts, and no
    suppression flips between near-equal boxes from mask to mask), batched, in the model's inference
    precision (bf16 where the CPU has it). Masked pixels take 0 on the normalised input: the
    preprocessor's mean colour, RISE's fill (cam_eval's deletion uses a blurred copy instead).
    ``n_masks``: ``defaults.DRISE_MASKS`` when None (read at the call)."""
    from .drise import DRISE, DRiseTarget
    from .precision import inference_precision

    h, w = sample.metainfo["img_shape"]
    wrapper = DetectorWrapper(model, sample, with_nms=False)
    with torch.no_grad(), inference_precision(model):
        heatmap = DRISE(wrapper, n_masks=n_masks or defaults.DRISE_MASKS, seed=seed)(
            inputs, [DRiseTarget(bboxes, labels)], size=(h, w))[0]
    return heatmap[:h, :w]


def box_cam(model: BaseDetector, image: str | Path, method: str = defaults.CAM_METHOD,
            target_layer: str | Sequence[str] = defaults.CAM_LAYER, topk: int = defaults.CAM_TOPK,
            score_thr: float = defaults.SCORE_THR, norm_in_bbox: bool = False, target: str = defaults.CAM_TARGET,
            ann_file: str | Path | None = None) -> CamResult:
    """CAM for one image's boxes to explain (``select_targets``); the image file is read once.

    ``missed`` and ``false-positive`` compare with the annotations (``ground_truth``; ``ann_file``
    defaults to the split's COCO json beside the image's folder).
    """
    import mmcv

    check_method(method)
    check_target(target)
    names = [target_layer] if isinstance(target_layer, str) else list(target_layer)
    img = read_image(image)
    inputs, sample = prepare_input(model, img)
    pred = predict_boxes(model, inputs, sample)
    scale = np.array(sample.metainfo["scale_factor"] * 2, dtype=np.float32)  # image -> input pixels
    gt = None
    if target != "predicted":
        gt_boxes, gt_labels = ground_truth(image, model.dataset_meta["classes"], ann_file)
        gt = (torch.from_numpy(gt_boxes * scale), torch.from_numpy(gt_labels))
    bboxes, labels, scores = select_targets(pred, target, score_thr, topk, gt)
    if len(bboxes) == 0:
        best = float(pred.scores.max()) if len(pred) else 0.0
        raise NoTargetError(no_target_message(image, target, int((pred.scores >= score_thr).sum()),
                                          0 if gt is None else len(gt[0]), best, score_thr))
    heatmap = explain(model, inputs, sample, bboxes.detach(), labels, method, names)
    heatmap = mmcv.imresize(heatmap, (img.shape[1], img.shape[0]))
    boxes = bboxes.detach().cpu().numpy() / scale
    if norm_in_bbox:
        heatmap = renormalize_in_boxes(heatmap, boxes)
    return CamResult(heatmap=np.clip(heatmap, 0, 1), boxes=boxes, scores=scores.detach().cpu().numpy(),
                     labels=labels.cpu().numpy(), image=img, method=method,
                     layer=IMAGE_LAYER if method in LAYERLESS_METHODS else "+".join(names),
                     image_path=Path(image), target=target)


TARGET_COLORS = {"predicted": "lime", "missed": "orange", "false-positive": "red"}
TARGET_TITLES = {"predicted": "predicted box(es)", "missed": "missed ground-truth box(es), best score there",
                 "false-positive": "false positive(s)"}


def draw_boxes(ax: Axes, result: CamResult, classes: Sequence[str]) -> None:
    from matplotlib.patches import Rectangle

    color = TARGET_COLORS[result.target]
    for (x1, y1, x2, y2), score, label in zip(result.boxes, result.scores, result.labels):
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=color, lw=2))
        ax.text(x1, y1 - 3, f"{classes[label]} {score:.2f}", color="black", fontsize=8,
                bbox=dict(facecolor=color, alpha=0.8, pad=1, lw=0))


def overlay(result: CamResult) -> np.ndarray:
    from pytorch_grad_cam.utils.image import show_cam_on_image

    return show_cam_on_image(result.image.astype(np.float32) / 255, result.heatmap, use_rgb=True, image_weight=0.5)


def plot_cam(result: CamResult, classes: Sequence[str] = ("balloon",), out: str | Path | None = None) -> Figure:
    """Two panels: the boxes explained, and the CAM overlay with the same boxes."""
    import matplotlib.pyplot as plt

    img = result.image
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.2 * img.shape[0] / img.shape[1] + 0.8))
    for ax, shown in zip(axes, (img, overlay(result))):
        ax.imshow(shown)
        draw_boxes(ax, result, classes)
        ax.axis("off")
    axes[0].set_title(f"{len(result.boxes)} {TARGET_TITLES[result.target]} to explain")
    axes[1].set_title(f"{result.method} on {result.layer} (target: scores inside those boxes)")
    fig.tight_layout()
    return save_figure(fig, out, dpi=80)


def plot_cams(results: Sequence[CamResult], classes: Sequence[str] = ("balloon",),
              out: str | Path | None = None, titles: Sequence[str] | None = None) -> Figure:
    """One overlay per result side by side (e.g. the three neck scales), titled with layer and focus."""
    import matplotlib.pyplot as plt

    img = results[0].image
    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 5 * img.shape[0] / img.shape[1] + 0.8),
                             squeeze=False)
    for i, (ax, result) in enumerate(zip(axes[0], results)):
        ax.imshow(overlay(result))
        draw_boxes(ax, result, classes)
        title = titles[i] if titles else f"{result.method} on {result.layer}"
        ax.set_title(f"{title}\nfocus {format_focus(result.focus)}", fontsize=10)
        ax.axis("off")
    fig.tight_layout()
    return save_figure(fig, out, dpi=80)


NECK_STRIDES = {"neck.out_convs.2": 32, "neck.out_convs.1": 16, "neck.out_convs.0": 8}  # CSPNeXtPAFPN's outputs


def cam_scales(model: BaseDetector, image: str | Path, method: str = defaults.CAM_METHOD,
               score_thr: float = defaults.SCORE_THR, target: str = defaults.CAM_TARGET,
               out: str | Path | None = None) -> list[CamResult]:
    """The CAM of one image at the neck's three scales, the default layer first and marked in its title."""
    layers = sorted(NECK_STRIDES, key=lambda layer: layer != defaults.CAM_LAYER)
    results = [box_cam(model, image, method=method, target_layer=layer, score_thr=score_thr, target=target)
               for layer in layers]
    titles = [f"{method}, stride {NECK_STRIDES[layer]} ({layer})" + (", default" * (layer == defaults.CAM_LAYER))
              for layer in layers]
    results[0].figure = plot_cams(results, model.dataset_meta["classes"], out=out, titles=titles)
    if out is not None:
        focus = ", ".join(f"stride {NECK_STRIDES[layer]} {format_focus(r.focus)}" for layer, r in zip(layers, results))
        print(f"wrote {display_path(out)} ({len(results[0].boxes)} box(es) explained; focus {focus})")
    return results


def cam(config: str | Path, checkpoint: str | Path | None, image: str | Path, method: str = defaults.CAM_METHOD,
        target_layer: str | Sequence[str] = defaults.CAM_LAYER, topk: int = defaults.CAM_TOPK,
        score_thr: float = defaults.SCORE_THR, norm_in_bbox: bool = False,
        out: str | Path | None = f"{defaults.FIGURES_DIR}/{defaults.CAM_FIGURE}", device: str = defaults.DEVICE,
        model: BaseDetector | None = None, target: str = defaults.CAM_TARGET,
        ann_file: str | Path | None = None) -> list[CamResult]:
    """Box AM for an image or a folder: one ``CamResult`` (with its ``figure``) per image explained.

    For one image, the figure goes to the file ``out``. For a folder, ``out`` is a folder that
    gets one figure per image; images without a box to explain (``target``) are skipped, and the
    focus of each map (mean CAM inside the boxes / outside) is printed with the median.
    """
    check_method(method)  # before the model loads
    check_target(target)
    model = model or load_model(config, checkpoint, device)
    classes = model.dataset_meta["classes"]
    args = dict(method=method, target_layer=target_layer, topk=topk, score_thr=score_thr, norm_in_bbox=norm_in_bbox,
                target=target, ann_file=ann_file)
    if not Path(image).is_dir():
        result = box_cam(model, image, **args)
        result.figure = plot_cam(result, classes, out)
        if out is not None:
            print(f"wrote {display_path(out)} ({len(result.boxes)} box(es) explained, "
                  f"focus {format_focus(result.focus)})")
        return [result]
    import matplotlib.pyplot as plt

    results, nothing_to_explain = [], []
    for path in list_images(image):
        try:
            result = box_cam(model, path, **args)
        except NoTargetError:
            nothing_to_explain.append(path.name)
            continue
        except DataError as err:
            print(f"{path.name}: skipped ({str(err).replace(f'{path}: ', '')})")
            continue
        result.figure = plot_cam(result, classes, Path(out) / f"{path.stem}.png" if out is not None else None)
        plt.close(result.figure)  # saved, and kept in the result: a notebook shows the figures it asks for, not all
        print(f"{path.name}: {len(result.boxes)} box(es), focus {format_focus(result.focus)}")
        results.append(result)
    if nothing_to_explain:
        kind = {"predicted": f"predicted box >= {score_thr}", "missed": "missed balloon",
                "false-positive": "false positive"}[target]
        print(f"skipped {len(nothing_to_explain)} image(s) without a {kind}: {', '.join(nothing_to_explain)}")
    focus = np.array([r.focus for r in results])
    focus = focus[~np.isnan(focus)]
    if len(focus):
        layer = results[0].layer
        boxes = "" if target == "predicted" else f" ({target} boxes)"
        print(f"{method} on {layer}{boxes}: median focus {np.median(focus):.2f} over {len(focus)} images "
              f"({np.mean(focus > 1):.0%} above 1; 1 = no preference for the boxes)"
              + (f"; {len(results) - len(focus)} image(s) without a defined focus" if len(focus) < len(results)
                 else ""))
    return results
