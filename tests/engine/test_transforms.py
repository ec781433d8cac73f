"""CachedCopyPaste: balloons pasted from a cached image, occluded boxes recomputed, masks dropped."""
import numpy as np
import pytest
from mmdet.structures.bbox import HorizontalBoxes
from mmdet.structures.mask import PolygonMasks

from balloondet.engine.transforms import CachedCopyPaste

SIZE = 64


def sample(boxes, value):
    """An image filled with ``value`` whose objects are axis-aligned squares given as polygons."""
    polygons = [[np.array([x1, y1, x2, y1, x2, y2, x1, y2], dtype=np.float64)] for x1, y1, x2, y2 in boxes]
    return {
        "img": np.full((SIZE, SIZE, 3), value, dtype=np.uint8),
        "img_shape": (SIZE, SIZE),
        "gt_bboxes": HorizontalBoxes(np.array(boxes, dtype=np.float32).reshape(-1, 4)),
        "gt_bboxes_labels": np.zeros(len(boxes), dtype=np.int64),
        "gt_ignore_flags": np.zeros(len(boxes), dtype=bool),
        "gt_masks": PolygonMasks(polygons, SIZE, SIZE),
    }


def test_pastes_a_cached_object_and_drops_an_occluded_one():
    paste = CachedCopyPaste(prob=1.0, selected=False)  # paste every cached object
    first = paste(sample([(8, 8, 40, 40)], value=200))
    assert len(first["gt_bboxes"]) == 1  # nothing cached yet: unchanged
    assert "gt_masks" not in first  # dropped for the box-only detector

    # the destination's small object at (12, 12)-(24, 24) lies under the cached 32 px square
    out = paste(sample([(12, 12, 24, 24), (48, 48, 60, 60)], value=50))
    boxes = out["gt_bboxes"].tensor.numpy()
    assert len(boxes) == 2  # the covered object is gone, the other kept, the pasted one added
    assert np.allclose(boxes[0], [48, 48, 60, 60], atol=1)
    assert np.allclose(boxes[1], [8, 8, 40, 40], atol=1)
    assert out["img"].dtype == np.uint8
    assert (out["img"][20, 20] == 200).all() and (out["img"][2, 2] == 50).all()
    assert len(out["gt_bboxes_labels"]) == len(out["gt_ignore_flags"]) == 2


def test_partly_covered_box_shrinks_to_what_is_visible():
    paste = CachedCopyPaste(prob=1.0, selected=False)
    paste(sample([(0, 0, 32, 64)], value=200))  # covers the left half
    out = paste(sample([(16, 8, 56, 40)], value=50))
    boxes = out["gt_bboxes"].tensor.numpy()
    visible = boxes[0]
    assert visible[0] >= 31 and np.allclose(visible[1:], [8, 56, 40], atol=1)


def test_prob_zero_never_pastes_and_missing_masks_are_named():
    paste = CachedCopyPaste(prob=0.0)
    paste(sample([(8, 8, 40, 40)], value=200))
    out = paste(sample([(48, 48, 60, 60)], value=50))
    assert len(out["gt_bboxes"]) == 1 and (out["img"] == 50).all()
    no_masks = sample([(8, 8, 40, 40)], value=1)
    del no_masks["gt_masks"]
    with pytest.raises(KeyError, match="with_mask=True"):
        paste(no_masks)
    with pytest.raises(ValueError, match="prob"):
        CachedCopyPaste(prob=2)


def test_copy_paste_experiment_pipeline_runs_on_converted_polygons(synthetic_root):
    """The experiment's whole training pipeline (polygons through mosaic, resize, crop, flip, pad, then
    pasted) on the converted synthetic data: boxes stay inside the 320 px crop and masks are dropped."""
    import random

    from mmdet.registry import DATASETS
    from mmdet.utils import register_all_modules

    from balloondet.engine.config import build_config

    register_all_modules()
    cfg = build_config("experiments/rtmdet_tiny_cpu-scratch_balloon_copypaste", data_root=synthetic_root)
    for step in cfg.train_dataloader.dataset.pipeline:
        if step.type == "CachedCopyPaste":
            step.prob = 1.0  # paste into every sample once the cache has one
    random.seed(0)
    np.random.seed(0)
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    boxes = []
    for i in range(12):
        sample = dataset[i % len(dataset)]
        assert tuple(sample["inputs"].shape) == (3, 320, 320)
        instances = sample["data_samples"].gt_instances
        assert "masks" not in instances
        b = instances.bboxes.tensor.numpy()
        assert ((b[:, :2] >= -1) & (b[:, 2:] <= 321) & (b[:, 2:] > b[:, :2])).all()
        boxes.append(len(b))
    assert sum(boxes) > 0


def test_every_experiment_config_builds_on_a_cpu_recipe():
    """Each experiment is named after the recipe it varies and keeps that recipe's weights, schedule and test."""
    from balloondet.core import defaults
    from balloondet.engine.config import build_config, config_dirs

    names = sorted(p.stem for d in config_dirs() for p in (d / "experiments").glob("*.py"))
    assert len(names) >= 4
    recipes = {name: build_config(name) for name in (defaults.CPU_CONFIG, defaults.CPU_FINETUNE_CONFIG)}
    for name in names:
        base = next(r for r in recipes if name.startswith(r + "_"))
        recipe, cfg = recipes[base], build_config(f"experiments/{name}")
        assert cfg.load_from == recipe.load_from and cfg.train_cfg.max_epochs == recipe.train_cfg.max_epochs, name
        assert cfg.test_dataloader.dataset.pipeline == recipe.test_dataloader.dataset.pipeline, name
