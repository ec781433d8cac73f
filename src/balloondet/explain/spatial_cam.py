"""mmyolo's spatial Grad-CAM and Grad-CAM++ (``SpatialBaseCAM`` in mmyolo/utils/boxam_utils.py): each
activation weighted by its own gradient, not by the channel's mean gradient.

Stock Grad-CAM weights a channel by its gradient averaged over the whole map, which suits one class
score per image; a detector's box score depends on a few cells, and the average smears them over
the image. grad-cam's ``LayerCAM`` is the same idea with the gradient's ReLU. Importing this module
imports grad-cam (seconds): ``methods.cam_methods`` does it when a CAM is asked for.
"""
from __future__ import annotations

import numpy as np
import torch
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
    """Grad-CAM whose weights are the gradient itself, pixel by pixel."""

    def get_cam_weights(self, input_tensor: torch.Tensor, target_layer: torch.nn.Module, targets: list,
                        activations: np.ndarray, grads: np.ndarray) -> np.ndarray:
        return grads


class SpatialGradCAMPlusPlus(SpatialBaseCAM, GradCAMPlusPlus):
    """Grad-CAM++'s weights (eq. 19 of arXiv:1710.11063) before its sum over the pixels."""

    def get_cam_weights(self, input_tensor: torch.Tensor, target_layer: torch.nn.Module, targets: list,
                        activations: np.ndarray, grads: np.ndarray) -> np.ndarray:
        grads2 = grads**2
        alpha = grads2 / (2 * grads2 + activations.sum(axis=(2, 3), keepdims=True) * grads2 * grads + 1e-6)
        return np.where(grads != 0, alpha, 0) * np.maximum(grads, 0)


SPATIAL_CAM_CLASSES = {cls.__name__: cls for cls in (SpatialGradCAM, SpatialGradCAMPlusPlus)}
