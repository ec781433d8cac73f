"""The `featmap` step: what the backbone and the neck see, captured with forward hooks.

RTMDet's CSPNeXt backbone hands stages 2-4 (strides 8, 16, 32) to the CSPNeXtPAFPN neck,
whose ``out_convs[0..2]`` produce the three scales the head predicts from. Each map is
reduced over channels (mean, the strongest channel, or the top-k channels), cropped to the
image's un-padded area and laid over the image with mmengine's ``Visualizer.draw_featmap``.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from balloondet.core import defaults
from balloondet.core.errors import ConfigError
from balloondet.core.files import display_path
from balloondet.core.images import read_image, save_figure
from balloondet.engine.detector import get_layer, image_region

if TYPE_CHECKING:
    import numpy as np
    import torch
    from matplotlib.figure import Figure
    from mmdet.models.detectors import BaseDetector
    from mmdet.structures import DetDataSample

    from balloondet.engine.detector import Detector

DISPLAY_SIZE = 640
MODULES = ("backbone", "neck")
REDUCTIONS = {"mean": "squeeze_mean", "max": "select_max", "topk": None}


@dataclass
class FeatureMap:
    layer: str  # module name inside the detector, e.g. "neck.out_convs.2"
    stride: int  # input pixels per feature-map cell
    tensor: torch.Tensor  # (C, H, W) for the padded network input

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.tensor.shape)


def output_layers(model: BaseDetector, module: str) -> list[str]:
    """Names of the submodules whose outputs are ``module``'s three outputs."""
    if module == "backbone":
        return [f"backbone.stage{i}" for i in model.backbone.out_indices]
    if module == "neck":
        return [f"neck.out_convs.{i}" for i in range(len(model.neck.out_convs))]
    raise ConfigError(f"unknown module {module!r}: choose {' or '.join(MODULES)}")


def capture(detector: Detector, image: str | Path, layers: list[str]) -> tuple[list[FeatureMap], DetDataSample]:
    """Run the detector on ``image`` (path) with hooks on ``layers``.

    Returns ``(feature maps, data sample)``; the sample carries the prediction and the
    input geometry (``img_shape``, ``batch_input_shape``, ``scale_factor``).
    """
    grabbed, handles = {}, []
    for name in layers:
        layer = get_layer(detector.model, name)
        handles.append(layer.register_forward_hook(
            # .float(): under bf16 inference the maps are bf16, which numpy cannot hold
            lambda _m, _i, output, name=name: grabbed.__setitem__(name, output.detach()[0].float().cpu())))
    try:
        sample = detector.predict(image)
    finally:
        for h in handles:
            h.remove()
    input_h = sample.metainfo["batch_input_shape"][0]
    maps = [FeatureMap(name, round(input_h / grabbed[name].shape[1]), grabbed[name]) for name in layers]
    return maps, sample


def draw(fmap: FeatureMap, image: np.ndarray, img_shape: tuple[int, int], reduction: str = "mean",
         topk: int = 4) -> np.ndarray:
    """RGB overlay of one feature map on the original image."""
    import math

    from mmengine.visualization import Visualizer

    if reduction not in REDUCTIONS:
        raise ConfigError(f"unknown reduction {reduction!r}: choose {', '.join(REDUCTIONS)}")
    h = math.ceil(img_shape[0] / fmap.stride)
    w = math.ceil(img_shape[1] / fmap.stride)
    valid = fmap.tensor[:, :h, :w]  # drop the cells that only saw padding
    with warnings.catch_warnings():
        # mmengine warns that the map "will be interpolated" to the image's size: that is the point here
        warnings.filterwarnings("ignore", message="Since the spatial dimensions", category=UserWarning)
        if reduction == "topk":
            cols = min(topk, 2)
            return Visualizer.draw_featmap(valid, image, channel_reduction=None, topk=topk,
                                           arrangement=(math.ceil(topk / cols), cols))
        return Visualizer.draw_featmap(valid, image, channel_reduction=REDUCTIONS[reduction])


def plot_module(maps: list[FeatureMap], image: np.ndarray, img_shape: tuple[int, int], module: str,
                reduction: str = "mean", topk: int = 4, out: str | Path | None = None) -> Figure:
    """One figure per module: a panel per output, titled by layer, stride and shape."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(maps), figsize=(5.2 * len(maps), 4.6), squeeze=False, layout="constrained")
    for ax, fmap in zip(axes[0], maps, strict=True):
        ax.imshow(draw(fmap, image, img_shape, reduction, topk))
        c, h, w = fmap.shape
        ax.set_title(f"{fmap.layer}\nstride {fmap.stride}, {c}×{h}×{w}", fontsize=10)
        ax.axis("off")
    how = {"mean": "channel mean", "max": "strongest channel", "topk": f"top {topk} channels"}[reduction]
    fig.suptitle(f"{module} outputs ({how}; warm = strong activation)", fontsize=12)
    return save_figure(fig, out, dpi=80)


def featmap(detector: Detector, image: str | Path, modules: Sequence[str] = MODULES,
            reduction: str = "mean", topk: int = 4,
            out: str | Path | None = defaults.FIGURES_DIR) -> dict[str, tuple[list[FeatureMap], Figure]]:
    """Feature-map figures ``OUT/<module>_visualization.png``; returns {module: (maps, figure)}."""
    import mmcv

    if reduction not in REDUCTIONS:
        raise ConfigError(f"unknown reduction {reduction!r}: choose {', '.join(REDUCTIONS)}")
    img = read_image(image)
    if max(img.shape[:2]) > DISPLAY_SIZE:  # drawing over a 2048 px photo is slow and shows nothing more
        img = mmcv.imrescale(img, (DISPLAY_SIZE, DISPLAY_SIZE))
    results = {}
    for module in modules:
        maps, sample = capture(detector, image, output_layers(detector.model, module))
        path = Path(out) / defaults.FEATMAP_FIGURE.format(module=module) if out is not None else None
        fig = plot_module(maps, img, image_region(sample), module, reduction, topk, path)
        results[module] = (maps, fig)
        if path is not None:
            print(f"wrote {display_path(path)}")
    return results
