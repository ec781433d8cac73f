"""Grad-CAM pieces that need no trained model: the focus ratio, error handling, mmdet's private API."""

import numpy as np
import pytest
import torch

from balloondet.explain.methods import CAM_METHODS, cam_methods, run_cam


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 2, 3, padding=1)
        torch.nn.init.constant_(self.conv.weight, 0.1)  # activations: positive around the lit pixels
        torch.nn.init.zeros_(self.conv.bias)

    def forward(self, x):
        return self.conv(x)


def test_run_cam_returns_the_first_images_map():
    model = Tiny()
    inputs = torch.zeros(1, 1, 8, 8)
    inputs[..., 2:4, 2:4] = 1  # the only non-zero input pixels

    def target(output):  # channel 0, top-left quadrant
        return output[0, :4, :4].sum()

    heatmap = run_cam(cam_methods()["gradcam"], model, [model.conv], inputs, [target])
    assert heatmap.shape == (8, 8) and heatmap.min() == 0 and heatmap.max() == pytest.approx(1, abs=1e-5)
    assert np.unravel_index(heatmap.argmax(), heatmap.shape) in {(2, 2), (2, 3), (3, 2), (3, 3)}  # on the lit pixels
    assert heatmap[6:, 6:].max() == 0  # nothing where the input is dark


def test_run_cam_raises_the_real_error():
    """grad-cam's __exit__ swallows an IndexError raised in its `with` block; run_cam raises it."""
    model = Tiny()

    def target(output):
        raise IndexError("target index 7 is out of range")

    with pytest.raises(IndexError, match="target index 7 is out of range"):
        run_cam(cam_methods()["gradcam"], model, [model.conv], torch.zeros(1, 1, 8, 8), [target])


def test_every_cam_method_name_is_a_grad_cam_class():
    from pytorch_grad_cam.base_cam import BaseCAM

    from balloondet.explain.drise import DRISE
    from balloondet.explain.methods import LAYERLESS_METHODS

    methods = cam_methods()
    assert list(methods) == list(CAM_METHODS)
    assert all(issubclass(cls, BaseCAM) for name, cls in methods.items() if name not in LAYERLESS_METHODS)
    assert methods["drise"] is DRISE  # black-box: no layer, not a grad-cam class


def two_blobs() -> tuple[Tiny, torch.Tensor]:
    """Tiny and an input lit in two places: (2:4, 2:4), inside the target's quadrant, and (5:7, 5:7), outside."""
    inputs = torch.zeros(1, 1, 8, 8)
    inputs[..., 2:4, 2:4] = 1
    inputs[..., 5:7, 5:7] = 1
    return Tiny(), inputs


def quadrant_target(output):  # channel 0 in the top-left quadrant: its gradient is zero elsewhere
    return output[0, :4, :4].sum()


@pytest.mark.parametrize("method", ["spatial-gradcam", "spatial-gradcam++", "layercam"])
def test_spatial_methods_keep_the_gradients_layout(method):
    """Stock Grad-CAM averages each channel's gradient over the map, so both lit blobs light up, the
    one the target never sees included. The spatial methods weight each activation by its own
    gradient: the blob outside the target's quadrant stays dark. Not a renamed copy of Grad-CAM."""
    model, inputs = two_blobs()
    stock = run_cam(cam_methods()["gradcam"], model, [model.conv], inputs, [quadrant_target])
    assert stock[5:7, 5:7].max() == pytest.approx(stock[2:4, 2:4].max(), rel=0.05)  # both blobs alike
    spatial = run_cam(cam_methods()[method], model, [model.conv], inputs, [quadrant_target])
    assert spatial[2:4, 2:4].max() == pytest.approx(1, abs=1e-5)
    assert spatial[5:, 5:].max() == 0


def test_spatial_gradcam_plusplus_differs_from_spatial_gradcam():
    """Grad-CAM++'s weights are not the plain gradient: with one channel's gradient twice the other's,
    the maps of spatial Grad-CAM and spatial Grad-CAM++ differ."""
    model, inputs = two_blobs()
    torch.nn.init.constant_(model.conv.weight[1], 0.3)

    def target(output):
        return output[0, :4, :4].sum() + 2 * output[1, 4:, 4:].sum()

    plain = run_cam(cam_methods()["spatial-gradcam"], model, [model.conv], inputs, [target])
    plusplus = run_cam(cam_methods()["spatial-gradcam++"], model, [model.conv], inputs, [target])
    assert np.abs(plain - plusplus).max() > 0.1


