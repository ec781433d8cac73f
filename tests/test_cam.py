"""Grad-CAM pieces that need no trained model: the focus ratio, error handling, mmdet's private API."""
import inspect
import math

import numpy as np
import pytest
import torch

from balloondet.cam import CAM_METHODS, cam_methods, format_focus, inside_outside_ratio, run_cam


def test_inside_outside_ratio():
    heatmap = np.zeros((10, 20), np.float32)
    heatmap[:, :10] = 0.8  # the left half
    heatmap[:, 10:] = 0.2
    assert inside_outside_ratio(heatmap, np.array([[0, 0, 10, 10]])) == pytest.approx(4.0)
    assert inside_outside_ratio(heatmap, np.array([[10, 0, 20, 10]])) == pytest.approx(0.25)
    assert inside_outside_ratio(heatmap, np.array([[-5, -5, 10, 30]])) == pytest.approx(4.0)  # clipped to the image
    heatmap[:, 10:] = 0
    assert inside_outside_ratio(heatmap, np.array([[0, 0, 10, 10]])) > 1e5  # nothing outside: very large, finite


@pytest.mark.parametrize("boxes", [np.array([[0, 0, 20, 10]]), np.array([[-3, -3, 25, 12]]),
                                   np.array([[0, 0, 10, 10], [10, 0, 20, 10]]), np.zeros((0, 4))])
def test_inside_outside_ratio_is_nan_when_undefined(boxes):
    """Boxes covering the whole image (no outside) or nothing of it: nan, not an exception."""
    ratio = inside_outside_ratio(np.random.default_rng(0).random((10, 20)), boxes)
    assert math.isnan(ratio)
    assert format_focus(ratio) == "n/a (the boxes cover the whole image)"
    assert format_focus(2.345) == "2.35"


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

    from balloondet.cam import LAYERLESS_METHODS
    from balloondet.drise import DRISE

    methods = cam_methods()
    assert list(methods) == list(CAM_METHODS)
    assert all(issubclass(cls, BaseCAM) for name, cls in methods.items() if name not in LAYERLESS_METHODS)
    assert methods["drise"] is DRISE  # black-box: no layer, not a grad-cam class


def test_mmdet_private_api_that_detector_wrapper_calls():
    """DetectorWrapper calls mmdet's private per-image post-processing with keyword arguments and
    select_single_mlvl(detach=False). If mmdet changes either, this fails here, not deep in a CAM run."""
    from mmdet.models.dense_heads import RTMDetHead
    from mmdet.models.utils import select_single_mlvl

    params = list(inspect.signature(RTMDetHead._predict_by_feat_single).parameters)
    assert params == ["self", "cls_score_list", "bbox_pred_list", "score_factor_list", "mlvl_priors", "img_meta",
                      "cfg", "rescale", "with_nms"]
    assert list(inspect.signature(select_single_mlvl).parameters) == ["mlvl_tensors", "batch_id", "detach"]


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


def test_missed_and_false_positive_targets_match_one_to_one_like_the_figure():
    """Two balloons under one prediction leave one missed; a second prediction on a found balloon is a
    false positive: the same outcome as the ground-truth-vs-prediction figure's matching (cocostats)."""
    from mmengine.structures import InstanceData

    from balloondet.cam import select_targets
    from balloondet.cocostats import match_image

    gt_boxes = torch.tensor([[0.0, 0, 100, 100], [0.0, 10, 100, 110], [200.0, 200, 240, 240]])
    gt_labels = torch.zeros(3, dtype=torch.long)
    pred = InstanceData(bboxes=torch.tensor([[0.0, 5, 100, 105], [202.0, 200, 240, 240], [200.0, 202, 240, 242]]),
                        scores=torch.tensor([0.9, 0.8, 0.6]), labels=torch.zeros(3, dtype=torch.long))
    missed, _, _ = select_targets(pred, "missed", score_thr=0.3, gt=(gt_boxes, gt_labels))
    assert len(missed) == 1 and missed[0].tolist() in ([0, 0, 100, 100], [0, 10, 100, 110])
    wrong, _, scores = select_targets(pred, "false-positive", score_thr=0.3, gt=(gt_boxes, gt_labels))
    assert wrong.tolist() == [[200, 202, 240, 242]] and scores.tolist() == pytest.approx([0.6])

    def xywh(b):
        return [b[0], b[1], b[2] - b[0], b[3] - b[1]]

    hits, _, missed_boxes = match_image([{"bbox": xywh(b)} for b in gt_boxes.tolist()],
                                        [{"bbox": xywh(b), "score": s} for b, s in
                                         zip(pred.bboxes.tolist(), pred.scores.tolist())])
    assert hits.count(False) == len(wrong) and len(missed_boxes) == len(missed)
