"""The CAM figures: the boxes explained beside the overlay (``plot_cam``), or one overlay per layer (``plot_cams``)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from balloondet.core.images import save_figure
from balloondet.explain.maps import CamResult, format_focus

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


TARGET_COLORS = {"predicted": "lime", "missed": "orange", "false-positive": "red"}

TARGET_TITLES = {"predicted": "predicted box(es)", "missed": "missed ground-truth box(es), best score there",
                 "false-positive": "false positive(s)"}


def draw_boxes(ax: Axes, result: CamResult, classes: Sequence[str]) -> None:
    """The boxes explained, in the colour of their kind, labelled with class and score."""
    from matplotlib.patches import Rectangle

    color = TARGET_COLORS[result.target]
    for (x1, y1, x2, y2), score, label in zip(result.boxes, result.scores, result.labels, strict=True):
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=color, lw=2))
        ax.text(x1, y1 - 3, f"{classes[label]} {score:.2f}", color="black", fontsize=8,
                bbox=dict(facecolor=color, alpha=0.8, pad=1, lw=0))


def overlay(result: CamResult) -> np.ndarray:
    """The map laid over the image (RGB uint8)."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    return show_cam_on_image(result.image.astype(np.float32) / 255, result.heatmap, use_rgb=True, image_weight=0.5)


def plot_cam(result: CamResult, classes: Sequence[str], out: str | Path | None = None) -> Figure:
    """Two panels: the boxes explained, and the CAM overlay with the same boxes."""
    import matplotlib.pyplot as plt

    img = result.image
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.2 * img.shape[0] / img.shape[1] + 0.8))
    for ax, shown in zip(axes, (img, overlay(result)), strict=True):
        ax.imshow(shown)
        draw_boxes(ax, result, classes)
        ax.axis("off")
    axes[0].set_title(f"{len(result.boxes)} {TARGET_TITLES[result.target]} to explain")
    axes[1].set_title(f"{result.method} on {result.layer} (target: scores inside those boxes)")
    fig.tight_layout()
    return save_figure(fig, out, dpi=80)


def plot_cams(results: Sequence[CamResult], classes: Sequence[str],
              out: str | Path | None = None, titles: Sequence[str] | None = None) -> Figure:
    """One overlay per result side by side (e.g. the three neck scales), titled with layer and focus."""
    import matplotlib.pyplot as plt

    img = results[0].image
    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 5 * img.shape[0] / img.shape[1] + 0.8),
                             squeeze=False)
    for i, (ax, result) in enumerate(zip(axes[0], results, strict=True)):
        ax.imshow(overlay(result))
        draw_boxes(ax, result, classes)
        title = titles[i] if titles else f"{result.method} on {result.layer}"
        ax.set_title(f"{title}\nfocus {format_focus(result.focus)}", fontsize=10)
        ax.axis("off")
    fig.tight_layout()
    return save_figure(fig, out, dpi=80)
