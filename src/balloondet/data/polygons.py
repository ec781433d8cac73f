"""Polygons in image pixels: an ellipse sampled as one, clipped to an image, measured (area, box)."""
from __future__ import annotations

import math
from typing import Iterable, Tuple

Point = Tuple[float, float]  # typing.Tuple: evaluated at import, also on Python 3.8


def ellipse_polygon(cx: float, cy: float, rx: float, ry: float, theta: float, vertices: int) -> list[Point]:
    """``vertices`` points on the ellipse of centre (cx, cy), radii rx, ry, turned by ``theta`` (radians)."""
    cos_t, sin_t = math.cos(theta), math.sin(theta)
    points = []
    for i in range(vertices):
        a = 2 * math.pi * i / vertices
        dx, dy = rx * math.cos(a), ry * math.sin(a)
        points.append((cx + dx * cos_t - dy * sin_t, cy + dx * sin_t + dy * cos_t))
    return points


def clip_polygon(points: Iterable[Point], width: float, height: float) -> list[Point]:
    """Sutherland-Hodgman clipping of a polygon to the rectangle [0, width] x [0, height]."""
    out = list(points)
    edges = (
        (lambda p: p[0] >= 0, lambda p, q: _cut_x(p, q, 0.0)),
        (lambda p: p[0] <= width, lambda p, q: _cut_x(p, q, width)),
        (lambda p: p[1] >= 0, lambda p, q: _cut_y(p, q, 0.0)),
        (lambda p: p[1] <= height, lambda p, q: _cut_y(p, q, height)),
    )
    for inside, cut in edges:
        src, out = out, []
        for i, cur in enumerate(src):
            prev = src[i - 1]
            if inside(cur):
                if not inside(prev):
                    out.append(cut(prev, cur))
                out.append(cur)
            elif inside(prev):
                out.append(cut(prev, cur))
        if not out:
            break
    return out


def _cut_x(p: Point, q: Point, x: float) -> Point:
    t = (x - p[0]) / (q[0] - p[0])
    return (x, p[1] + t * (q[1] - p[1]))


def _cut_y(p: Point, q: Point, y: float) -> Point:
    t = (y - p[1]) / (q[1] - p[1])
    return (p[0] + t * (q[0] - p[0]), y)


def polygon_area(points: list[Point]) -> float:
    """Shoelace area (absolute value)."""
    s = 0.0
    for i, (x1, y1) in enumerate(points):
        x2, y2 = points[(i + 1) % len(points)]
        s += x1 * y2 - x2 * y1
    return abs(s) / 2.0


def polygon_bbox(points: list[Point]) -> list[float]:
    """COCO ``[x, y, w, h]`` of the polygon's extent."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
