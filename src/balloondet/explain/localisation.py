"""Localisation yardsticks of a saliency map: does it point at the boxes it explains?

- ``pointing_game`` (Zhang et al., "Top-down neural attention by excitation backprop", ECCV 2016;
  used for detectors by ODAM, ICLR 2023): 1 when the map's maximum lies in a box, grown by a
  tolerance of ``defaults.POINTING_TOLERANCE`` px (Zhang et al.'s 15 px) on every side, else 0.
  Ties: a hit when any of the tied maxima lies there. A constant map points nowhere: nan.
- ``energy_pointing_game`` (Score-CAM, Wang et al., CVPRW 2020): the map's sum inside the boxes
  over its sum in the image; no tolerance. An all-zero map has no energy: nan.

Both take the boxes a map explains together: one map per image explains all of them (as ``cam``
draws it), so the inside is their union. For one box that is the per-box game. Chance for a map
that knows nothing: the union's (grown, for the pointing game) share of the image (``chance``).
Pure numpy: maps and boxes in the same pixels.
"""
from __future__ import annotations

import math

import numpy as np

from balloondet.core import defaults
from balloondet.core.errors import DataError


def union_mask(boxes: np.ndarray, shape: tuple[int, ...], margin: float = 0) -> np.ndarray:
    """True on the pixels whose centre lies in any box (x1, y1, x2, y2) grown by ``margin`` px."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    h, w = shape[:2]
    ys, xs = np.arange(h)[:, None] + 0.5, np.arange(w)[None] + 0.5  # pixel i covers [i, i + 1)
    mask = np.zeros((h, w), bool)
    for x1, y1, x2, y2 in boxes:
        mask |= (xs >= x1 - margin) & (xs <= x2 + margin) & (ys >= y1 - margin) & (ys <= y2 + margin)
    return mask


def _check(heatmap: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    heatmap = np.asarray(heatmap)
    if heatmap.ndim != 2 or heatmap.size == 0:
        raise DataError(f"a localisation metric needs a 2-D map, got shape {heatmap.shape}")
    if np.asarray(boxes).size % 4:
        raise DataError(f"boxes must be (K, 4) x1, y1, x2, y2, got shape {np.asarray(boxes).shape}")
    return heatmap


def pointing_game(heatmap: np.ndarray, boxes: np.ndarray, tolerance: float = defaults.POINTING_TOLERANCE) -> float:
    """1.0 when a maximum of the map lies within ``tolerance`` px of a box, 0.0 when none does, nan for a
    constant map (every pixel a maximum: it points nowhere)."""
    heatmap = _check(heatmap, boxes)
    top = heatmap.max()
    if not np.isfinite(top) or top == heatmap.min():
        return math.nan
    return float((union_mask(boxes, heatmap.shape, tolerance) & (heatmap == top)).any())


def energy_pointing_game(heatmap: np.ndarray, boxes: np.ndarray) -> float:
    """The map's sum inside the boxes over its sum over the image (negative values count as 0); nan if all 0."""
    heatmap = np.clip(_check(heatmap, boxes), 0, None)
    total = float(heatmap.sum())
    if not total > 0:
        return math.nan
    return float(heatmap[union_mask(boxes, heatmap.shape)].sum() / total)


def chance(boxes: np.ndarray, shape: tuple[int, ...], tolerance: float = 0) -> float:
    """The share of the image in the boxes (grown by ``tolerance``): what a map without information scores."""
    return float(union_mask(boxes, shape, tolerance).mean())
