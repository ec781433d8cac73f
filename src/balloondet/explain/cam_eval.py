"""The `cam-eval` step: is a CAM faithful to the detector, or a picture of the image?

For each image, the predicted boxes (score >= ``score_thr``, at most ``topk``) are explained by
every method at every neck scale (``cam.explain``), and each map is measured:

- **deletion**: remove the image's pixels in the map's order (most salient first), step by step,
  re-run the detector and track the boxes' score (each box's best IoU-matching prediction,
  ``targets.matched_scores``, as ``BoxScoreTarget`` matches; mean over the boxes). Removed pixels
  take a blurred copy of the image, not black: black is itself a strong, unnatural signal. A map
  that points at what the detector uses makes the score fall fast: a low area under the curve.
- **insertion**: start from the blurred image and reveal its pixels in the same order; a
  faithful map makes the score rise fast: a high area.
- **randomisation** (Adebayo et al. 2018, "Sanity checks for saliency maps"): re-initialise the
  neck and the head, explain the same boxes again and take the Spearman rank correlation with
  the trained model's map. A map that stays the same did not depend on what the model learned:
  an edge detector scores 1. The same correlation inside the boxes only is reported beside it: a
  target that scores the priors inside the boxes confines the gradient to the boxes' neighbourhood
  for any weights, and the zeros shared outside would raise the whole-map correlation by themselves.
- **focus**: mean map inside the boxes / outside (``maps.inside_outside_ratio``); where the map
  is, not whether the model uses it.
- **pointing game** and **energy pointing game** (``localisation``): is the map's maximum in the
  boxes (within ``defaults.POINTING_TOLERANCE`` px), and which share of its sum is; chance is the
  boxes' share of the image (``pointing_chance``, with the tolerance). Also where, not whether.

Baselines that know nothing of the trained weights: grad-cam's ``RandomCAM`` (random channel
weights on the same layer) and a Sobel edge map of the image. D-RISE (``drise``, opt-in: hundreds of
forward passes per map) explains the image, not a layer: one row, layer ``image``, like Sobel's.

Everything happens at the network input's resolution (the resized image, ``image_region``, its padding cut off):
that is what the detector sees, and the perturbed copies of an image go through it as one batch
(the main cost: ``2 / step - 2`` images per map), padded only to the head's largest stride (``scored_region``).
"""
from __future__ import annotations

import copy
import math
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from balloondet.core import defaults
from balloondet.core.console import progress_bar
from balloondet.core.errors import ConfigError, DataError
from balloondet.core.images import list_images
from balloondet.engine.detector import image_region
from balloondet.explain.cam import drise_mask_count, explain, explain_shared, numpy_seed, shares_a_pass
from balloondet.explain.cam_eval_report import (
    IMAGE,
    RANDOM,
    SOBEL,
    CamEvalResult,
    MapScore,
    plot_cam_eval,
    write_table,
)
from balloondet.explain.localisation import chance, energy_pointing_game, pointing_game
from balloondet.explain.maps import box_mask, inside_outside_ratio
from balloondet.explain.methods import LAYERLESS_METHODS, check_method
from balloondet.explain.selection import select_targets
from balloondet.explain.targets import matched_scores
from balloondet.explain.wrapper import DetectorWrapper, predict_boxes

if TYPE_CHECKING:
    from mmdet.models.detectors import BaseDetector
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData

    from balloondet.engine.detector import Detector

BLUR_SIGMA = 0.2  # of the longer image side: at 0.05 the blurred balloons were still found (smoke model)
BATCH = defaults.INFERENCE_BATCH  # perturbed images per forward pass
SCORE_FLOOR = 0.01  # the lowest prediction score the deletion/insertion curves track
RANDOMISED_PARTS = ("neck", "bbox_head")  # re-initialised for the sanity check; the backbone stays trained


# --- pieces -----------------------------------------------------------------------------
def stride_of(model: BaseDetector, layer: str) -> int | None:
    """The stride of a neck output (``neck.out_convs.i``), else None."""
    match = re.fullmatch(r"neck\.out_convs[.\[](\d+)\]?", layer)
    strides = model.bbox_head.prior_generator.strides
    if match is None or int(match[1]) >= len(strides):
        return None
    return int(strides[int(match[1])][0])


def scored_region(model: BaseDetector, sample: DetDataSample) -> tuple[int, int]:
    """The part of the network input the perturbed copies are scored on: the image region (``image_region``)
    rounded up to the head's largest stride, so every pyramid level sees whole cells. The test pipeline's
    padding beyond it (a third of a 640 x 640 input for a 4:3 photo) is the same in every copy; left out, each
    forward costs about a quarter less (``bench/forward_variants.py``)."""
    strides = getattr(getattr(model.bbox_head, "prior_generator", None), "strides", None)
    pad_h, pad_w = sample.metainfo["batch_input_shape"][:2]
    if not strides:  # a head without a prior grid: score the whole input
        return pad_h, pad_w
    stride = max(max(s) if isinstance(s, (tuple, list)) else s for s in strides)
    h, w = image_region(sample)
    return min(math.ceil(h / stride) * stride, pad_h), min(math.ceil(w / stride) * stride, pad_w)


def fractions_for(step: float) -> np.ndarray:
    """0, step, 2 step, ..., 1."""
    if not 0 < step <= 0.5:
        raise ConfigError(f"deletion/insertion step {step}: give a fraction of the pixels in (0, 0.5]")
    n = round(1 / step)
    return np.linspace(0, 1, n + 1)


def blurred_copy(inputs: torch.Tensor, sample: DetDataSample, sigma: float = BLUR_SIGMA) -> torch.Tensor:
    """The input with its image region (not the padding) Gaussian-blurred, sigma a fraction of its longer side.

    Blurred at a lower resolution and scaled back: the same picture as a full-size blur, whose
    kernel (~6 sigma = 770 px at 640 px input) took 70 s per image on 2 CPU cores.
    """
    import torch.nn.functional as F
    from torchvision.transforms.functional import gaussian_blur

    h, w = image_region(sample)
    s = max(sigma * max(h, w), 0.5)
    factor = max(1, int(s // 4))  # blur with a sigma of about 4 px on a 1/factor copy
    region = inputs[..., :h, :w].float()
    small = region
    if factor > 1:
        small = F.interpolate(region, size=(max(h // factor, 1), max(w // factor, 1)), mode="area")
    s_small = s / factor
    sh, sw = small.shape[-2:]
    kernel = min(2 * math.ceil(3 * s_small) + 1, 2 * ((min(sh, sw) - 1) // 2) + 1)  # reflect padding: kernel < side
    if kernel >= 3:
        small = gaussian_blur(small, [kernel, kernel], [s_small, s_small])
    out = inputs.clone()
    out[..., :h, :w] = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False) if factor > 1 else small
    return out


def pixel_ranks(heatmap: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each pixel's rank in the map's order (0: the most salient); ties in random order, not raster order."""
    order = np.lexsort((rng.random(heatmap.size), -heatmap.ravel()))
    ranks = np.empty(heatmap.size, np.int64)
    ranks[order] = np.arange(heatmap.size)
    return ranks.reshape(heatmap.shape)


def rank_masks(ranks: np.ndarray, fractions: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """(fractions, 1, *size) booleans: the first ``fraction`` of the pixels by rank, per fraction (the padding
    beyond ``ranks``' shape never)."""
    h, w = ranks.shape
    counts = torch.as_tensor(np.round(fractions * ranks.size), dtype=torch.long)
    masks = torch.zeros(len(fractions), 1, *size, dtype=torch.bool)
    masks[:, 0, :h, :w] = torch.as_tensor(ranks)[None] < counts[:, None, None]
    return masks


def perturbed(start: torch.Tensor, end: torch.Tensor, ranks: np.ndarray, fractions: np.ndarray,
              masks: torch.Tensor | None = None, out: torch.Tensor | None = None) -> torch.Tensor:
    """One image per fraction: ``start`` with its first ``fraction`` of pixels (by rank) taken from ``end``;
    ``masks``: ``rank_masks``' for these, where already made; ``out``: the tensor to write them into."""
    masks = rank_masks(ranks, fractions, start.shape[-2:]) if masks is None else masks
    return torch.where(masks.to(start.device), end, start, out=out)


def first_survivors(candidates: InstanceData, nms_cfg: dict, max_per_img: int) -> InstanceData:
    """mmdet's last post-processing step, ``batched_nms`` then the ``max_per_img`` best, on the fewest boxes.

    Greedy NMS keeps or drops a box by the higher-scored boxes alone, so NMS on the ``m`` best candidates
    decides those ``m`` exactly as on all of them; once that prefix holds ``max_per_img`` survivors they are
    the ones kept. Starting at twice ``max_per_img`` and growing fourfold: on a trained model's perturbed
    copies, thousands of candidates above ``SCORE_FLOOR`` made NMS a quarter of cam-eval's time.
    """
    from mmcv.ops import batched_nms

    order = candidates.scores.argsort(descending=True, stable=True)
    m = min(len(order), 2 * max_per_img)
    while True:
        prefix = candidates[order[:m]]
        dets, keep = batched_nms(prefix.bboxes, prefix.scores, prefix.labels, nms_cfg)
        if len(keep) >= max_per_img or m == len(order):
            kept = prefix[keep]
            kept.scores = dets[:, -1]
            return kept[:max_per_img]
        m = min(len(order), 4 * m)


def box_scores(detector: Detector, sample: DetDataSample, images: torch.Tensor, bboxes: torch.Tensor,
               labels: torch.Tensor, batch: int = BATCH) -> np.ndarray:
    """For each image, the mean over the boxes of their matched prediction's score (0 when unmatched): the
    detector's own predictions (its test config), NMS by ``first_survivors``."""
    # Predictions below SCORE_FLOOR count as no match (score 0): the test config's floor of 0.001
    # sends every prior to NMS, a third of the evaluation's time, for scores no curve can show.
    test_cfg = detector.model.bbox_head.test_cfg.copy()
    test_cfg.score_thr = max(test_cfg.get("score_thr", 0), SCORE_FLOOR)
    wrapper = DetectorWrapper(detector.model, sample, test_cfg=test_cfg, with_nms=False, network=detector.network)
    scores = []
    # the detector's inference precision (bf16 autocast where it was loaded so): no gradients here
    with torch.no_grad(), detector.autocast():
        for chunk in images.split(batch):
            candidates = wrapper(detector.layout(chunk))  # perturbed copies come out of torch.where in NCHW
            preds = [first_survivors(c, test_cfg.nms, test_cfg.max_per_img) if len(c) else c for c in candidates]
            scores += [float(matched_scores(bboxes, labels, pred).mean()) for pred in preds]
    return np.array(scores)


def auc(curve: np.ndarray, fractions: np.ndarray) -> float:
    """Area under the curve (trapezoids) over the fraction of pixels, 0 to 1."""
    return float(((curve[1:] + curve[:-1]) / 2 * np.diff(fractions)).sum())


def deletion_insertion(detector: Detector, sample: DetDataSample, inputs: torch.Tensor, blurred: torch.Tensor,
                       heatmap: np.ndarray, bboxes: torch.Tensor, labels: torch.Tensor, fractions: np.ndarray,
                       ends: tuple[float, float], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The (deletion, insertion) score curves of one map.

    ``ends``: the scores of the full and the blurred image, the same for every map of the image
    (the first and last steps), so only the inner steps run: both curves in one batch.
    """
    ranks = pixel_ranks(heatmap, rng)
    inner = fractions[1:-1]
    n = len(inner)
    masks = rank_masks(ranks, inner, inputs.shape[-2:])  # the same pixels leave (deletion) and come (insertion)
    batch = torch.empty(2 * n, *inputs.shape[1:], dtype=inputs.dtype, device=inputs.device)  # NCHW, in one piece
    perturbed(inputs, blurred, ranks, inner, masks, out=batch[:n])
    perturbed(blurred, inputs, ranks, inner, masks, out=batch[n:])
    scores = box_scores(detector, sample, batch, bboxes, labels)
    full, blur = ends
    deletion = np.concatenate([[full], scores[:n], [blur]])
    insertion = np.concatenate([[blur], scores[n:], [full]])
    return deletion, insertion


def sobel_map(inputs: torch.Tensor, sample: DetDataSample) -> np.ndarray:
    """Gradient magnitude of the image's grey level, in [0, 1]: a map that knows nothing of the model."""
    h, w = image_region(sample)
    grey = inputs[:1, :, :h, :w].float().mean(1, keepdim=True)
    kx = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]], device=grey.device)
    grads = torch.nn.functional.conv2d(torch.nn.functional.pad(grey, (1, 1, 1, 1), mode="replicate"),
                                       torch.stack([kx, kx.T])[:, None])
    mag = grads.pow(2).sum(1)[0].sqrt().cpu().numpy()
    return mag / max(float(mag.max()), 1e-7)


def randomised_copy(model: BaseDetector, seed: int = 0, parts: Sequence[str] = RANDOMISED_PARTS) -> BaseDetector:
    """A copy of ``model`` with ``parts`` re-initialised (every ``reset_parameters``: convs, norms and their stats)."""
    clone = copy.deepcopy(model)
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        for part in parts:
            for module in getattr(clone, part).modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
    finally:
        torch.random.set_rng_state(generator_state)
    return clone.eval()


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two maps; nan when one is constant (no order to compare)."""
    from scipy.stats import spearmanr

    if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    return float(spearmanr(a.ravel(), b.ravel())[0])


def map_for(model: BaseDetector, inputs: torch.Tensor, sample: DetDataSample, bboxes: torch.Tensor,
            labels: torch.Tensor, method: str, layer: str, seed: int, bf16: bool = False,
            drise_masks: int | None = None) -> np.ndarray:
    """``explain``, or the Sobel map; RandomCAM and D-RISE with a fixed seed (the trained and randomised maps
    share it); D-RISE's ``drise_masks`` detections in bf16 when ``bf16`` (the detector's precision)."""
    if method == SOBEL:
        return sobel_map(inputs, sample)
    with numpy_seed(seed):
        return explain(model, inputs, sample, bboxes, labels, method, layer, seed=seed, bf16=bf16,
                       drise_masks=drise_masks)


def row_maps(model: BaseDetector, inputs: torch.Tensor, sample: DetDataSample, bboxes: torch.Tensor,
             labels: torch.Tensor, rows: Sequence[tuple[str, str]], seed: int, bf16: bool = False,
             drise_masks: int | None = None) -> tuple[dict[tuple[str, str], np.ndarray], dict[tuple[str, str], float]]:
    """Every row's map (``map_for``'s), and the seconds each took. The rows whose method ``shares_a_pass``
    (Grad-CAM and RandomCAM at every layer, by default) come from one forward and backward pass
    (``explain_shared``, the same maps), its time split evenly between them."""
    shared = [row for row in rows if shares_a_pass(row[0])]
    maps, seconds = {}, {}
    if shared:
        start = time.perf_counter()
        maps.update(explain_shared(model, inputs, sample, bboxes, labels, shared, seed))
        seconds.update(dict.fromkeys(shared, (time.perf_counter() - start) / len(shared)))
    for method, layer in rows:
        if (method, layer) not in maps:
            start = time.perf_counter()
            maps[method, layer] = map_for(model, inputs, sample, bboxes, labels, method, layer, seed, bf16, drise_masks)
            seconds[method, layer] = time.perf_counter() - start
    return maps, seconds


# --- one image, a folder ----------------------------------------------------------------
def evaluate_image(detector: Detector, image: str | Path, rows: Sequence[tuple[str, str]], fractions: np.ndarray,
                   score_thr: float = defaults.SCORE_THR, topk: int = defaults.CAM_TOPK,
                   random_model: BaseDetector | None = None, seed: int = 0,
                   drise_masks: int | None = None, scorer: Detector | None = None) -> list[MapScore]:
    """Every (method, layer) map of one image, measured; DataError when no box reaches ``score_thr``.

    ``scorer``: the detector that scores the perturbed copies (``detector.scorer()``: batch norms folded, ONNX
    Runtime on the CPU in fp32; the same scores to float rounding, faster); the maps and the boxes to explain
    come from ``detector`` itself.
    """
    scorer = scorer or detector
    inputs, sample = detector.prepare(image)
    pred = predict_boxes(detector.model, inputs, sample)
    bboxes, labels, _ = select_targets(pred, "predicted", score_thr, topk)
    if len(bboxes) == 0:
        raise DataError(f"{image}: no predicted box with score >= {score_thr} to explain")
    blurred = blurred_copy(inputs, sample)
    h, w = scored_region(detector.model, sample)  # what changes between the copies, and whole stride cells
    scored, blurred = inputs[..., :h, :w], blurred[..., :h, :w]
    ends = tuple(box_scores(scorer, sample, torch.cat([scored, blurred]), bboxes, labels))
    boxes = bboxes.cpu().numpy()  # input pixels, like the maps
    inside = box_mask(boxes, image_region(sample))
    bf16 = detector.precision == "bf16"
    maps, seconds = row_maps(detector.model, inputs, sample, bboxes, labels, rows, seed, bf16, drise_masks)
    random_maps = {} if random_model is None else \
        row_maps(random_model, inputs, sample, bboxes, labels, rows, seed, bf16, drise_masks)[0]
    results = []
    for method, layer in rows:
        start = time.perf_counter()
        heatmap = maps[method, layer]
        deletion, insertion = deletion_insertion(scorer, sample, scored, blurred, heatmap, bboxes, labels, fractions,
                                                 ends, np.random.default_rng(seed))
        seconds[method, layer] += time.perf_counter() - start  # the map's and its curves' (not the random map's)
        corr = corr_in_boxes = math.nan
        if random_model is not None:
            random_map = random_maps[method, layer]
            corr = rank_correlation(heatmap, random_map)
            corr_in_boxes = rank_correlation(heatmap[inside], random_map[inside])
        results.append(MapScore(image=Path(image).name, method=method, layer=layer,
                                focus=inside_outside_ratio(heatmap, boxes), deletion=deletion, insertion=insertion,
                                deletion_auc=auc(deletion, fractions), insertion_auc=auc(insertion, fractions),
                                randomisation=corr, randomisation_in_boxes=corr_in_boxes,
                                seconds=seconds[method, layer],
                                pointing_game=pointing_game(heatmap, boxes), energy_pointing_game=energy_pointing_game(
                                    heatmap, boxes), pointing_chance=chance(boxes, heatmap.shape,
                                                                            defaults.POINTING_TOLERANCE)))
    return results


def table_rows(methods: Sequence[str], layers: Sequence[str], baselines: bool = True) -> list[tuple[str, str]]:
    """(method, layer) pairs: methods x layers (a layerless method, D-RISE: one row, layer "image"), then
    RandomCAM x layers and Sobel."""
    rows = [(m, IMAGE if m in LAYERLESS_METHODS else layer) for m in methods for layer in layers]
    if baselines:
        rows += [(RANDOM, layer) for layer in layers] + [(SOBEL, IMAGE)]
    return list(dict.fromkeys(rows))  # each row once, in order


def summarise(model: BaseDetector, scores: Sequence[MapScore], rows: Sequence[tuple[str, str]]) -> list[dict]:
    """The table: per (method, layer), median focus and mean AUCs and correlation over the images."""

    def mean(values: list[float]) -> float:
        values = [v for v in values if not math.isnan(v)]
        return float(np.mean(values)) if values else math.nan

    table = []
    for method, layer in rows:
        mine = [s for s in scores if s.method == method and s.layer == layer]
        focus = [s.focus for s in mine if not math.isnan(s.focus)]
        table.append({"method": method, "layer": layer, "stride": stride_of(model, layer) if layer != IMAGE else None,
                      "focus": float(np.median(focus)) if focus else math.nan,
                      "deletion_auc": mean([s.deletion_auc for s in mine]),
                      "insertion_auc": mean([s.insertion_auc for s in mine]),
                      "randomisation_corr": mean([s.randomisation for s in mine]),
                      "randomisation_corr_in_boxes": mean([s.randomisation_in_boxes for s in mine]),
                      "pointing_game": mean([s.pointing_game for s in mine]),
                      "energy_pointing_game": mean([s.energy_pointing_game for s in mine]),
                      "pointing_chance": mean([s.pointing_chance for s in mine]),
                      "seconds_per_image": mean([s.seconds for s in mine]), "images": len(mine)})
    return table


def cam_eval(detector: Detector, folder: str | Path,
             methods: Sequence[str] = defaults.CAM_EVAL_METHODS, layers: Sequence[str] = defaults.CAM_EVAL_LAYERS,
             step: float = defaults.CAM_EVAL_STEP, max_images: int | None = None, baselines: bool = True,
             randomisation: bool = True, score_thr: float = defaults.SCORE_THR, topk: int = defaults.CAM_TOPK,
             out: str | Path | None = defaults.CAM_EVAL_DIR, seed: int = 0,
             drise_masks: int | None = None) -> CamEvalResult:
    """Faithfulness of the CAM methods on a folder of images (or one image): the table (``format_table``), written.

    ``out``: a folder for ``cam_eval.json``, ``cam_eval.md`` and ``cam_eval.png`` (None: nothing written).
    Images without a box above ``score_thr`` are skipped. Fewer ``methods``/``layers``, a larger
    ``step`` or ``max_images`` make it faster; the time per image is printed.
    """
    for method in methods:
        check_method(method)
    n_masks = drise_mask_count(drise_masks)  # checked before the first image's maps, not after
    fractions = fractions_for(step)
    images = list_images(folder)[:max_images]
    rows = table_rows(methods, layers, baselines)
    random_model = randomised_copy(detector.model, seed) if randomisation else None
    scorer = None  # the hundreds of forward passes per image: Detector.scorer, made from the first image's input
    scores, done, skipped = [], [], []
    start = time.perf_counter()
    bar = progress_bar(len(images), f"cam-eval ({len(rows)} maps per image)", unit="image")
    for i, image in enumerate(images):
        try:
            scorer = scorer or detector.scorer(detector.prepare(image)[0])
            scores += evaluate_image(detector, image, rows, fractions, score_thr, topk, random_model, seed + i,
                                     drise_masks, scorer)
            done.append(image.name)
        except DataError as err:
            skipped.append(f"{image.name}: {err}")
        bar.update(1)
    bar.close()
    elapsed = time.perf_counter() - start
    if not done:
        raise DataError(f"{folder}: no image with a predicted box >= {score_thr} to evaluate")
    result = CamEvalResult(rows=summarise(detector.model, scores, rows), scores=scores, fractions=fractions,
                           images=done, skipped=skipped, seconds_per_image=elapsed / len(images),
                           drise_masks=n_masks if any(method in LAYERLESS_METHODS for method in methods) else None)
    print(f"{len(done)} image(s), {len(rows)} maps each, {len(fractions) - 1} steps: "
          f"{result.seconds_per_image:.1f} s per image" + (f"; skipped (no box >= {score_thr}): "
                                                            f"{', '.join(s.split(':')[0] for s in skipped)}"
                                                            if skipped else ""))
    if out is not None:
        result.paths = write_table(result, out)
        result.paths["figure"] = Path(out) / "cam_eval.png"
        result.figure = plot_cam_eval(result, result.paths["figure"])
        print(f"wrote {result.paths['json']}, {result.paths['markdown']} and {result.paths['figure']}")
    return result
