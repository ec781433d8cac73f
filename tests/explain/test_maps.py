"""A CAM's measures: the focus ratio, box masks, the renormalisation inside boxes."""
import math

import numpy as np
import pytest

from balloondet.explain.maps import format_focus, inside_outside_ratio


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


def test_box_mask_and_renormalisation_use_the_same_clipped_boxes():
    from balloondet.explain.maps import box_mask, renormalize_in_boxes

    boxes = np.array([[-2.4, 1, 3, 4.6], [5, 0, 8, 2]])  # the first reaches past the left edge
    mask = box_mask(boxes, (6, 10))
    assert mask[1:5, 0:3].all() and mask[0:2, 5:8].all() and mask.sum() == 4 * 3 + 2 * 3
    heatmap = np.arange(60, dtype=np.float32).reshape(6, 10)
    out = renormalize_in_boxes(heatmap, boxes)
    assert (out[~mask] == 0).all()
    for rows, cols in ((slice(1, 5), slice(0, 3)), (slice(0, 2), slice(5, 8))):
        assert out[rows, cols].min() == 0 and out[rows, cols].max() == pytest.approx(1, abs=1e-6)
