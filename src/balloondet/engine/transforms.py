"""Data transforms that training configs can use (registered in mmdet's TRANSFORMS registry)."""
from __future__ import annotations

import copy
import random

from mmcv.transforms.utils import cache_randomness
from mmdet.datasets.transforms import CopyPaste
from mmdet.registry import TRANSFORMS
from mmdet.structures.mask import PolygonMasks


@TRANSFORMS.register_module()
class CachedCopyPaste(CopyPaste):
    """mmdet's ``CopyPaste`` (Ghiasi et al. 2021) fed from a cache of recent images, as ``CachedMosaic``
    feeds Mosaic, so that it needs no ``MultiImageMixDataset`` wrapper (which ``PipelineSwitchHook``
    cannot switch) and sits in an ordinary pipeline.

    Place it after the resize/crop/pad steps: source and destination must have the same size. With
    probability ``prob`` a random subset of a cached image's objects (their polygons, from
    ``LoadAnnotations(with_mask=True, poly2mask=False)``) is pasted onto the image; occluded boxes are
    recomputed from what is left of their masks. ``drop_masks`` removes the masks afterwards, for a
    box-only detector.
    """

    def __init__(self, prob: float = 0.5, max_cached_images: int = 20, drop_masks: bool = True, **kwargs: object):
        super().__init__(**kwargs)
        if not 0 <= prob <= 1:
            raise ValueError(f"CachedCopyPaste: prob must be in [0, 1], got {prob}")
        if max_cached_images < 1:
            raise ValueError(f"CachedCopyPaste: max_cached_images must be >= 1, got {max_cached_images}")
        self.prob = prob
        self.max_cached_images = max_cached_images
        self.drop_masks = drop_masks
        self.results_cache: list[dict] = []

    @cache_randomness
    def _choose_source(self) -> int | None:
        if not self.results_cache or random.uniform(0, 1) > self.prob:
            return None
        return random.randint(0, len(self.results_cache) - 1)

    def transform(self, results: dict) -> dict:
        masks = results.get("gt_masks")
        if masks is None:
            raise KeyError("CachedCopyPaste needs gt_masks: load them with "
                           "LoadAnnotations(with_bbox=True, with_mask=True, poly2mask=False)")
        if isinstance(masks, PolygonMasks):
            # polygons are cheap to move through mosaic/resize/crop; the paste needs pixels
            results["gt_masks"] = masks.to_bitmap()
        source = self._choose_source()
        cached = copy.deepcopy(results)
        if source is not None and results["img"].shape == self.results_cache[source]["img"].shape:
            results["mix_results"] = [copy.deepcopy(self.results_cache[source])]
            results = super().transform(results)
            results.pop("mix_results", None)
            results["img"] = results["img"].astype(cached["img"].dtype)
        self.results_cache.append(cached)
        if len(self.results_cache) > self.max_cached_images:
            self.results_cache.pop(0)
        if self.drop_masks:
            results.pop("gt_masks", None)
        return results

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(prob={self.prob}, max_cached_images={self.max_cached_images}, "
                f"max_num_pasted={self.max_num_pasted}, drop_masks={self.drop_masks})")
