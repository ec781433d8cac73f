"""The CAM methods by name (the CLI's choices come from ``CAM_METHODS``), and how one runs.

``CAM_METHODS`` maps a name to a class: pytorch-grad-cam's, or ``explain.spatial_cam``'s.
``GRADIENT_METHODS`` explain the priors' class scores inside the boxes (``targets.PriorScoreTarget``);
the others (gradient-free) how the matched final predictions' scores change
(``targets.BoxScoreTarget``). ``randomcam`` (random channel weights) is a baseline for cam-eval.
``drise`` (``explain.drise.DRISE``, D-RISE) is black-box: no layer (its layer reads ``image``), masked
copies of the image through the detector.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from balloondet.core.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np
    import torch


CAM_METHODS = {"gradcam": "GradCAM", "gradcam++": "GradCAMPlusPlus", "spatial-gradcam": "SpatialGradCAM",
               "spatial-gradcam++": "SpatialGradCAMPlusPlus", "layercam": "LayerCAM", "eigencam": "EigenCAM",
               "ablationcam": "AblationCAM", "randomcam": "RandomCAM", "drise": "DRISE"}
GRADIENT_METHODS = ("gradcam", "gradcam++", "spatial-gradcam", "spatial-gradcam++", "layercam", "randomcam")
LAYERLESS_METHODS = ("drise",)  # black-box: explain the image, not a layer (their layer reads IMAGE_LAYER)
IMAGE_LAYER = "image"


def cam_methods() -> dict[str, type]:
    """``CAM_METHODS`` with their classes (importing grad-cam takes seconds: done here, when needed)."""
    import pytorch_grad_cam

    from balloondet.explain.drise import DRISE
    from balloondet.explain.spatial_cam import SPATIAL_CAM_CLASSES

    classes = {**vars(pytorch_grad_cam), **SPATIAL_CAM_CLASSES, "DRISE": DRISE}
    return {name: classes[cls] for name, cls in CAM_METHODS.items()}


def check_method(method: str) -> None:
    """A ``ConfigError`` naming the choices, unless ``method`` is one of ``CAM_METHODS``."""
    if method not in CAM_METHODS:
        raise ConfigError(f"unknown CAM method {method!r}: choose {', '.join(CAM_METHODS)}")


def fpn_reshape_transform(outputs: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """Several feature maps (N, C_i, H_i, W_i) -> one (N, sum C_i, H_max, W_max)."""
    import torch

    if isinstance(outputs, torch.Tensor):
        return outputs
    size = max((o.shape[-2:] for o in outputs), key=lambda s: s[0] * s[1])
    return torch.cat([torch.nn.functional.interpolate(o.abs(), size=tuple(size), mode="bilinear") for o in outputs], 1)


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
