"""The `cam` step: Grad-CAM "box AM" for a detector, built from grad-cam's small pieces.

``box_cam`` explains one image's boxes (``selection.select_targets``) with a method
(``methods.CAM_METHODS``) at a target layer; ``cam`` does it for an image or a folder and draws
the figures (``plots``); ``cam_scales`` compares the neck's three scales. The pieces: the
detector as grad-cam calls it (``wrapper``), what the map explains (``targets``), the map and its
focus (``maps``).

The default layer is the neck's smallest output scale (stride 32): in mmdet's CSPNeXtPAFPN
that is ``neck.out_convs.2`` (mmyolo calls it ``out_layers``).
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import numpy as np
import torch

from balloondet.core import defaults
from balloondet.core.errors import ConfigError, DataError
from balloondet.core.files import display_path
from balloondet.core.images import check_figure_path, list_images, read_image
from balloondet.engine.detector import get_layer, image_region
from balloondet.explain.maps import CamResult, format_focus, renormalize_in_boxes
from balloondet.explain.methods import (
    GRADIENT_METHODS,
    IMAGE_LAYER,
    LAYERLESS_METHODS,
    cam_methods,
    check_method,
    run_cam,
)
from balloondet.explain.plots import plot_cam, plot_cams
from balloondet.explain.selection import (
    NoTargetError,
    check_target,
    class_index,
    ground_truth,
    no_target_message,
    select_targets,
)
from balloondet.explain.targets import BoxScoreTarget, PriorScoreTarget
from balloondet.explain.wrapper import DetectorWrapper, predict_boxes

if TYPE_CHECKING:
    from mmdet.models.detectors import BaseDetector
    from mmdet.structures import DetDataSample

    from balloondet.engine.detector import Detector


def explain(model: BaseDetector, inputs: torch.Tensor, sample: DetDataSample, bboxes: torch.Tensor,
            labels: torch.Tensor, method: str = defaults.CAM_METHOD,
            target_layer: str | Sequence[str] = defaults.CAM_LAYER, seed: int = defaults.DRISE_SEED,
            bf16: bool = False, drise_masks: int | None = None) -> np.ndarray:
    """The map of a prepared input (``Detector.prepare``) for boxes in input pixels, on the torch model itself.

    Returns the (h, w) map of the resized image (``image_region``: the padding cut off), in [0, 1].
    D-RISE ignores ``target_layer``, draws ``drise_masks`` masks (``defaults.DRISE_MASKS`` when None)
    with ``seed`` and runs in bf16 when ``bf16``; the other methods ignore those three.
    """
    check_method(method)
    if method in LAYERLESS_METHODS:
        return explain_drise(model, inputs, sample, bboxes, labels, n_masks=drise_masks, seed=seed, bf16=bf16)
    names = [target_layer] if isinstance(target_layer, str) else list(target_layer)
    layers = [get_layer(model, name) for name in names]
    if method in GRADIENT_METHODS:  # class scores of the priors inside the boxes, on every level
        wrapper, targets = DetectorWrapper(model, sample, mode="dense"), [PriorScoreTarget(bboxes, labels)]
    else:  # gradient-free: how the matched final predictions' scores change (EigenCAM ignores it)
        wrapper, targets = DetectorWrapper(model, sample), [BoxScoreTarget(bboxes, labels)]
    kwargs = {"batch_size": 16} if method == "ablationcam" else {}
    heatmap = run_cam(cam_methods()[method], wrapper, layers, inputs, targets, **kwargs)  # padded input size
    h, w = image_region(sample)
    return heatmap[:h, :w]


def shares_a_pass(method: str) -> bool:
    """A gradient method whose map is grad-cam's ``get_cam_image`` of one layer's activations and gradients
    (``BaseCAM``'s own forward): every such method and layer can take its map from one shared pass."""
    from pytorch_grad_cam.base_cam import BaseCAM

    if method not in GRADIENT_METHODS:
        return False
    cls = cam_methods()[method]
    return all(getattr(cls, name) is getattr(BaseCAM, name)
               for name in ("forward", "compute_cam_per_layer", "aggregate_multi_layers"))


@contextlib.contextmanager
def numpy_seed(seed: int | None) -> Iterator[None]:
    """RandomCAM draws from numpy's global generator: seed it here (None: leave it), and leave it as it was."""
    if seed is None:
        yield
        return
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def explain_shared(model: BaseDetector, inputs: torch.Tensor, sample: DetDataSample, bboxes: torch.Tensor,
                   labels: torch.Tensor, rows: Sequence[tuple[str, str]],
                   seed: int | None = None) -> dict[tuple[str, str], np.ndarray]:
    """The maps of several (method, layer) rows, every method ``shares_a_pass``, from one forward and one
    backward pass of the dense target with every layer hooked, instead of one pass per row.

    Each map is what ``explain(..., method, layer)`` returns alone, computed as grad-cam computes one
    layer (``get_cam_image``, ReLU, scaled to the input, then its one-layer aggregate), with numpy's
    generator seeded with ``seed`` before each row (RandomCAM's weights: as a fresh call would draw them).
    """
    from pytorch_grad_cam.utils.image import scale_cam_image

    from balloondet.explain.methods import fpn_reshape_transform

    for method, _ in rows:
        if not shares_a_pass(method):
            raise ConfigError(f"{method} cannot share a pass: use explain() for it")
    names = list(dict.fromkeys(layer for _, layer in rows))
    activations: dict[str, torch.Tensor] = {}
    gradients: dict[str, torch.Tensor] = {}

    def keep(name: str) -> Callable:
        def hook(module: torch.nn.Module, args: tuple, output: torch.Tensor) -> None:
            activations[name] = fpn_reshape_transform(output).detach()
            output.register_hook(lambda grad: gradients.__setitem__(name, fpn_reshape_transform(grad).detach()))
        return hook

    handles = [get_layer(model, name).register_forward_hook(keep(name)) for name in names]
    try:
        wrapper = DetectorWrapper(model, sample, mode="dense").eval()
        outputs = wrapper(inputs)
        model.zero_grad()
        PriorScoreTarget(bboxes, labels)(outputs[0]).backward()
    finally:
        for handle in handles:
            handle.remove()
    h, w = image_region(sample)
    size = (inputs.shape[-1], inputs.shape[-2])  # grad-cam's target size: (width, height)
    classes = cam_methods()
    maps = {}
    for method, layer in rows:
        cam_fn = classes[method](wrapper, [])  # no layer hooked: only its get_cam_image is used
        acts, grads = activations[layer].cpu().numpy(), gradients[layer].cpu().numpy()
        with numpy_seed(seed):
            cam = cam_fn.get_cam_image(inputs, get_layer(model, layer), None, acts, grads, False)
        per_layer = scale_cam_image(np.maximum(cam, 0), size)[:, None]
        maps[(method, layer)] = cam_fn.aggregate_multi_layers([per_layer])[0][:h, :w]
    return maps


def drise_mask_count(drise_masks: int | None) -> int:
    """The masks a D-RISE map draws: ``defaults.DRISE_MASKS`` for None (read at the call); ConfigError below 2."""
    n = defaults.DRISE_MASKS if drise_masks is None else drise_masks
    if n < 2:
        raise ConfigError(f"--drise-masks {n}: D-RISE needs at least 2 masks")
    return n


def explain_drise(model: BaseDetector, inputs: torch.Tensor, sample: DetDataSample, bboxes: torch.Tensor,
                  labels: torch.Tensor, n_masks: int | None = None, seed: int = defaults.DRISE_SEED,
                  bf16: bool = False) -> np.ndarray:
    """D-RISE's (h, w) map: the detections before NMS (every prior that sees the box counts, and no
    suppression flips between near-equal boxes from mask to mask), batched, in bf16 where asked
    (the detector's precision). Masked pixels take 0 on the normalised input: the preprocessor's
    mean colour, RISE's fill (cam_eval's deletion uses a blurred copy instead).
    ``n_masks``: ``defaults.DRISE_MASKS`` when None (read at the call)."""
    from balloondet.engine.precision import cpu_autocast
    from balloondet.explain.drise import DRISE, DRiseTarget

    h, w = image_region(sample)
    wrapper = DetectorWrapper(model, sample, with_nms=False)
    with torch.no_grad(), cpu_autocast(enabled=bf16):
        heatmap = DRISE(wrapper, n_masks=drise_mask_count(n_masks), seed=seed)(
            inputs, [DRiseTarget(bboxes, labels)], size=(h, w))[0]
    return heatmap[:h, :w]


def box_cam(detector: Detector, image: str | Path, method: str = defaults.CAM_METHOD,
            target_layer: str | Sequence[str] = defaults.CAM_LAYER, topk: int = defaults.CAM_TOPK,
            score_thr: float = defaults.SCORE_THR, norm_in_bbox: bool = False, target: str = defaults.CAM_TARGET,
            ann_file: str | Path | None = None, drise_masks: int | None = None,
            class_name: str | None = None) -> CamResult:
    """CAM for one image's boxes to explain (``select_targets``); the image file is read once. ``class_name``:
    only boxes of that class (the map then explains that class's score).

    ``missed`` and ``false-positive`` compare with the annotations (``ground_truth``; ``ann_file``
    defaults to the split's COCO json beside the image's folder).
    """
    import mmcv

    check_method(method)
    check_target(target)
    names = [target_layer] if isinstance(target_layer, str) else list(target_layer)
    label = class_index(detector.classes, class_name)
    img = read_image(image)
    inputs, sample = detector.prepare(img)
    pred = predict_boxes(detector.model, inputs, sample)
    scale = np.array(sample.metainfo["scale_factor"] * 2, dtype=np.float32)  # image -> input pixels
    gt = None
    if target != "predicted":
        gt_boxes, gt_labels = ground_truth(image, detector.classes, ann_file)
        gt = (torch.from_numpy(gt_boxes * scale), torch.from_numpy(gt_labels))
    bboxes, labels, scores = select_targets(pred, target, score_thr, topk, gt, label=label)
    if len(bboxes) == 0:
        best = float(pred.scores.max()) if len(pred) else 0.0
        raise NoTargetError(no_target_message(image, target, int((pred.scores >= score_thr).sum()),
                                          0 if gt is None else len(gt[0]), best, score_thr, class_name))
    heatmap = explain(detector.model, inputs, sample, bboxes.detach(), labels, method, names,
                      bf16=detector.precision == "bf16", drise_masks=drise_masks)
    heatmap = mmcv.imresize(heatmap, (img.shape[1], img.shape[0]))
    boxes = bboxes.detach().cpu().numpy() / scale
    if norm_in_bbox:
        heatmap = renormalize_in_boxes(heatmap, boxes)
    return CamResult(heatmap=np.clip(heatmap, 0, 1), boxes=boxes, scores=scores.detach().cpu().numpy(),
                     labels=labels.cpu().numpy(), image=img, method=method,
                     layer=IMAGE_LAYER if method in LAYERLESS_METHODS else "+".join(names),
                     image_path=Path(image), target=target)


NECK_STRIDES = {"neck.out_convs.2": 32, "neck.out_convs.1": 16, "neck.out_convs.0": 8}  # CSPNeXtPAFPN's outputs


def cam_scales(detector: Detector, image: str | Path, method: str = defaults.CAM_METHOD,
               score_thr: float = defaults.SCORE_THR, target: str = defaults.CAM_TARGET,
               out: str | Path | None = None, class_name: str | None = None) -> list[CamResult]:
    """The CAM of one image at the neck's three scales, the default layer first and marked in its title."""
    layers = sorted(NECK_STRIDES, key=lambda layer: layer != defaults.CAM_LAYER)
    results = [box_cam(detector, image, method=method, target_layer=layer, score_thr=score_thr, target=target,
                       class_name=class_name) for layer in layers]
    titles = [f"{method}, stride {NECK_STRIDES[layer]} ({layer})" + (", default" * (layer == defaults.CAM_LAYER))
              for layer in layers]
    results[0].figure = plot_cams(results, detector.classes, out=out, titles=titles)
    if out is not None:
        focus = ", ".join(f"stride {NECK_STRIDES[layer]} {format_focus(r.focus)}"
                          for layer, r in zip(layers, results, strict=True))
        print(f"wrote {display_path(out)} ({len(results[0].boxes)} box(es) explained; focus {focus})")
    return results


def cam(detector: Detector, image: str | Path, method: str = defaults.CAM_METHOD,
        target_layer: str | Sequence[str] = defaults.CAM_LAYER, topk: int = defaults.CAM_TOPK,
        score_thr: float = defaults.SCORE_THR, norm_in_bbox: bool = False,
        out: str | Path | None = f"{defaults.FIGURES_DIR}/{defaults.CAM_FIGURE}", target: str = defaults.CAM_TARGET,
        ann_file: str | Path | None = None, drise_masks: int | None = None,
        class_name: str | None = None) -> list[CamResult]:
    """Box AM for an image or a folder: one ``CamResult`` (with its ``figure``) per image explained;
    ``class_name``: only the boxes of that class.

    For one image, the figure goes to the file ``out``. For a folder, ``out`` is a folder that
    gets one figure per image; images without a box to explain (``target``) are skipped, and the
    focus of each map (mean CAM inside the boxes / outside) is printed with the median.
    """
    check_method(method)
    check_target(target)
    classes = detector.classes
    args = dict(method=method, target_layer=target_layer, topk=topk, score_thr=score_thr, norm_in_bbox=norm_in_bbox,
                target=target, ann_file=ann_file, drise_masks=drise_masks, class_name=class_name)
    class_index(classes, class_name)  # an unknown class is refused before any image is read
    if not Path(image).is_dir():
        check_figure_path(out)  # before the minutes of work, not after
        result = box_cam(detector, image, **args)
        result.figure = plot_cam(result, classes, out)
        if out is not None:
            print(f"wrote {display_path(out)} ({len(result.boxes)} box(es) explained, "
                  f"focus {format_focus(result.focus)})")
        return [result]
    import matplotlib.pyplot as plt

    results, nothing_to_explain = [], []
    for path in list_images(image):
        try:
            result = box_cam(detector, path, **args)
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
        kind = {"predicted": f"predicted box >= {score_thr}", "missed": "missed box",
                "false-positive": "false positive"}[target] + (f" of class {class_name!r}" if class_name else "")
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
