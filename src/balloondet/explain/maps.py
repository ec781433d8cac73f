"""A CAM of one image (``CamResult``) and its measures: where the map is, against the boxes it explains."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np

from balloondet.core import defaults

if TYPE_CHECKING:
    from matplotlib.figure import Figure


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


def box_slices(boxes: np.ndarray) -> Iterator[tuple[slice, slice]]:
    """(rows, columns) of each box (x1, y1, x2, y2 in the map's pixels, rounded), clipped at 0."""
    for x1, y1, x2, y2 in boxes.round().astype(int):
        yield slice(max(y1, 0), y2), slice(max(x1, 0), x2)


def box_mask(boxes: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """True inside any of the boxes (x1, y1, x2, y2 in the map's pixels)."""
    mask = np.zeros(tuple(shape[:2]), bool)
    for rows, cols in box_slices(boxes):
        mask[rows, cols] = True
    return mask


def renormalize_in_boxes(heatmap: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Zero outside the boxes, min-max normalised inside each box (pytorch-grad-cam's recipe)."""
    out = np.zeros_like(heatmap)
    for rows, cols in box_slices(boxes):
        patch = heatmap[rows, cols]
        if patch.size:
            lo, hi = patch.min(), patch.max()
            out[rows, cols] = np.maximum(out[rows, cols], (patch - lo) / (hi - lo + 1e-7))
    return out


def inside_outside_ratio(heatmap: np.ndarray, boxes: np.ndarray) -> float:
    """Mean CAM inside the boxes over mean CAM outside them (1 = no preference).

    ``nan`` when the ratio is undefined: the boxes cover the whole image (nothing outside) or
    none of it. A map that is zero everywhere outside gives a very large finite ratio.
    """
    mask = box_mask(boxes, heatmap.shape)
    if mask.all() or not mask.any():
        return math.nan
    return float(heatmap[mask].mean() / max(heatmap[~mask].mean(), 1e-7))


def format_focus(focus: float) -> str:
    """A focus as printed: two decimals, or why it is undefined."""
    return "n/a (the boxes cover the whole image)" if math.isnan(focus) else f"{focus:.2f}"
