"""A small synthetic balloon dataset in the official VIA layout, deterministic for a seed.

Balloons are tilted ellipses with a highlight, a knot and a string, drawn over textured
backgrounds (sky gradient, noise, building and tree silhouettes as distractors). Labels
are VIA 1.x polygons, so the whole pipeline (convert, train, test, analyse) runs with no
network and no shared data.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from balloondet.data.polygons import ellipse_polygon

POLYGON_VERTICES = 24


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    import cv2

    top = rng.uniform(120, 235, size=3)
    bottom = rng.uniform(60, 200, size=3)
    t = np.linspace(0, 1, height)[:, None, None]
    img = (top * (1 - t) + bottom * t) * np.ones((1, width, 1))
    img += rng.normal(0, 6, size=img.shape)  # sensor-like noise
    for _ in range(rng.integers(1, 4)):  # buildings: dark rectangles rising from the bottom
        w = int(rng.integers(width // 10, width // 3))
        h = int(rng.integers(height // 6, height // 2))
        x = int(rng.integers(0, width - w))
        color = rng.uniform(30, 110, size=3)
        img[height - h:, x:x + w] = color + rng.normal(0, 4, size=(h, w, 3))
    for _ in range(rng.integers(0, 3)):  # trees: green round blobs, a near-miss for a balloon
        c = (int(rng.integers(0, width)), int(rng.integers(height // 2, height)))
        r = int(rng.integers(8, 30))
        green = (rng.uniform(20, 60), rng.uniform(90, 150), rng.uniform(20, 60))
        cv2.circle(img, c, r, tuple(float(v) for v in green), -1)
    return img


def _balloon(rng: np.random.Generator, img: np.ndarray, cx: float, cy: float, rx: float, ry: float,
             theta: float) -> list[tuple[int, int]]:
    import cv2

    color = np.array([0.0, 0.0, 0.0])
    color[rng.integers(0, 3)] = rng.uniform(170, 255)  # one saturated channel...
    color[rng.integers(0, 3)] += rng.uniform(0, 120)  # ...and sometimes a second
    color = np.clip(color, 0, 255)
    deg = math.degrees(theta)
    # string and knot first, so the balloon body covers their top end
    bx = cx - (ry + 2) * math.sin(theta)
    by = cy + (ry + 2) * math.cos(theta)
    sway = rng.uniform(-10, 10)
    pts = np.array([[bx + sway * math.sin(k / 3), by + k * 4] for k in range(12)], np.int32)
    cv2.polylines(img, [pts], False, (200.0, 200.0, 200.0), 1, cv2.LINE_AA)
    cv2.circle(img, (int(bx), int(by)), 2, tuple(float(c * 0.7) for c in color), -1)
    body = tuple(float(c) for c in color)
    cv2.ellipse(img, (int(cx), int(cy)), (int(rx), int(ry)), deg, 0, 360, body, -1, cv2.LINE_AA)
    shade = tuple(float(c * 0.6) for c in color)
    cv2.ellipse(img, (int(cx), int(cy)), (int(rx), int(ry)), deg, 20, 160, shade, 2, cv2.LINE_AA)
    hx, hy = cx - rx * 0.35, cy - ry * 0.4  # specular highlight, upper left
    cv2.ellipse(img, (int(hx), int(hy)), (max(1, int(rx * 0.2)), max(1, int(ry * 0.12))), deg - 30, 0, 360,
                (245.0, 245.0, 245.0), -1, cv2.LINE_AA)
    return [(int(round(x)), int(round(y))) for x, y in ellipse_polygon(cx, cy, rx, ry, theta, POLYGON_VERTICES)]


def make_image(rng: np.random.Generator, width: int, height: int,
               max_balloons: int = 3) -> tuple[np.ndarray, list[list[tuple[int, int]]]]:
    """One image (uint8 BGR) and its list of balloon polygons."""
    img = _background(rng, width, height)
    polygons = []
    n = int(rng.integers(0, max_balloons + 1)) if rng.random() < 0.1 else int(rng.integers(1, max_balloons + 1))
    for _ in range(n):
        rx = rng.uniform(0.06, 0.16) * min(width, height) * 1.6
        ry = rx * rng.uniform(1.1, 1.35)
        cx = rng.uniform(rx, width - rx)
        cy = rng.uniform(ry, height - ry * 1.5)
        polygons.append(_balloon(rng, img, cx, cy, rx, ry, rng.uniform(-0.35, 0.35)))
    return np.clip(img, 0, 255).astype(np.uint8), polygons


def write_split(out_dir: str | Path, n_images: int, seed: int, width: int = 320, height: int = 240,
                prefix: str = "synthetic") -> Path:
    """Write ``n_images`` JPEGs and a VIA 1.x ``via_region_data.json`` into ``out_dir``."""
    import cv2

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    via = {}
    for i in range(n_images):
        img, polygons = make_image(rng, width, height)
        name = f"{prefix}_{seed}_{i:03d}.jpg"
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 92])
        assert ok
        data = buf.tobytes()
        (out_dir / name).write_bytes(data)
        regions = {
            str(k): {
                "shape_attributes": {"name": "polygon",
                                     "all_points_x": [p[0] for p in poly],
                                     "all_points_y": [p[1] for p in poly]},
                "region_attributes": {},
            }
            for k, poly in enumerate(polygons)
        }
        via[f"{name}{len(data)}"] = {"fileref": "", "size": len(data), "filename": name,
                                     "base64_img_data": "", "file_attributes": {}, "regions": regions}
    (out_dir / "via_region_data.json").write_text(json.dumps(via), encoding="utf-8")
    return out_dir


def make_synthetic_dataset(root: str | Path, n_train: int = 48, n_val: int = 16, seed: int = 0,
                           width: int = 320, height: int = 240) -> Path:
    """``root/train`` and ``root/val`` in the official VIA layout (no COCO files)."""
    root = Path(root)
    write_split(root / "train", n_train, seed, width, height)
    write_split(root / "val", n_val, seed + 1000, width, height)
    return root
