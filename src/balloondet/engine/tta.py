"""Test-time augmentation for `test --tta`: mmdet's ``DetTTAModel`` with RTMDet's TTA settings.

mmdet 3.3.0's configs/rtmdet/rtmdet_tta.py tests every image at (640, 640), (320, 320) and (960, 960),
each flipped and not, and merges the six views' boxes by NMS at IoU 0.6, keeping 100. mmdet's
tools/test.py --tta wraps the config's model in that ``tta_model`` and replaces the test pipeline;
``use_tta`` does the same to a config, with two adaptations (see ``tta_pipeline``).
"""
from __future__ import annotations

import copy
from typing import Any

from balloondet.core.errors import ConfigError

TTA_MODEL = dict(type="DetTTAModel", tta_cfg=dict(nms=dict(type="nms", iou_threshold=0.6), max_per_img=100))
# RTMDet's scales (640, 320, 960) are 1, 1/2 and 3/2 of the 640 its configs test at. Taken as factors of the
# config's own test scale they are RTMDet's values for every recipe here that tests at 640 (the CPU recipe
# trains at 320 and tests at 640, so its views span what it was trained on and beyond), and they stay
# proportionate for a config that tests elsewhere (the smoke config, 192 px: 192, 96, 288).
TTA_SCALE_FACTORS = (1.0, 0.5, 1.5)
PAD_VALUE = dict(img=(114, 114, 114))  # RTMDet's grey
FLIP_META_KEYS = ("img_id", "img_path", "ori_shape", "img_shape", "scale_factor", "flip", "flip_direction")


def innermost_dataset(cfg: Any) -> Any:
    """The test dataloader's dataset, inside any dataset wrappers."""
    dataset = cfg.test_dataloader.dataset
    while "dataset" in dataset:
        dataset = dataset.dataset
    return dataset


def test_scale(cfg: Any) -> tuple[int, int]:
    """(w, h) of the ``Resize`` in the config's test pipeline."""
    resize = [t for t in innermost_dataset(cfg).get("pipeline", []) if t.get("type") == "Resize"]
    if not resize or "scale" not in resize[0]:
        raise ConfigError("test_dataloader's pipeline has no Resize with a scale; --tta scales that one")
    scale = resize[0]["scale"]
    return (scale, scale) if isinstance(scale, int) else tuple(scale)


def tta_scales(scale: tuple[int, int]) -> list[tuple[int, int]]:
    """RTMDet's three TTA scales for a config that tests at ``scale``."""
    return [(round(scale[0] * f), round(scale[1] * f)) for f in TTA_SCALE_FACTORS]


def tta_pipeline(cfg: Any) -> list[dict]:
    """rtmdet_tta.py's pipeline at ``tta_scales`` of the config's test scale.

    The config's own image loader is kept. Each view is padded to a square of its own scale, as the
    test pipelines here pad to their test scale, where rtmdet_tta.py pads every view to 960: on the
    CPU that would cost the 640 view 2.25 times and the 320 view 9 times the work, for grey pixels.
    """
    load = next((t for t in innermost_dataset(cfg).get("pipeline", []) if t.get("type") == "LoadImageFromFile"),
                dict(type="LoadImageFromFile", backend_args=None))
    return [dict(load), dict(type="TestTimeAug", transforms=[
        [dict(type="Resize", scale=s, keep_ratio=True) for s in tta_scales(test_scale(cfg))],
        # RandomFlip before Pad, so that the flipped boxes map back onto the image (rtmdet_tta.py's note)
        [dict(type="RandomFlip", prob=1.0), dict(type="RandomFlip", prob=0.0)],
        [dict(type="Pad", pad_to_square=True, pad_val=PAD_VALUE)],
        [dict(type="LoadAnnotations", with_bbox=True)],
        [dict(type="PackDetInputs", meta_keys=FLIP_META_KEYS)],
    ])]


def use_tta(cfg: Any) -> None:
    """Test ``cfg``'s model with RTMDet's TTA (in place), as mmdet's tools/test.py --tta sets it up."""
    from mmengine.config import ConfigDict

    innermost_dataset(cfg).pipeline = tta_pipeline(cfg)
    cfg.model = ConfigDict(**copy.deepcopy(TTA_MODEL), module=cfg.model)
