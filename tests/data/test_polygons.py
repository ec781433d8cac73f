"""Polygons: clipping to the image, the sampled ellipse."""
import pytest

from balloondet.data.polygons import clip_polygon, polygon_area


def test_clip_polygon_square_corner():
    clipped = clip_polygon([(-10, -10), (10, -10), (10, 10), (-10, 10)], 100, 100)
    assert polygon_area(clipped) == 100


def test_ellipse_polygon_lies_on_the_turned_ellipse():
    import math

    from balloondet.data.polygons import ellipse_polygon

    points = ellipse_polygon(50, 40, 20, 10, math.pi / 2, 32)
    assert len(points) == 32 and points[0] == pytest.approx((50, 60))  # a quarter turn: the x radius points down
    for x, y in points:  # turned back by theta, every point satisfies the ellipse's equation
        dx, dy = (y - 40), -(x - 50)
        assert (dx / 20) ** 2 + (dy / 10) ** 2 == pytest.approx(1)
