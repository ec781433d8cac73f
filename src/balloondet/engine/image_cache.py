"""Decode each image once per run: the photos are JPEGs of up to 2048 px that every epoch would decode again.

- :class:`CachedLoadImageFromFile`: mmcv's ``LoadImageFromFile`` that keeps what it decoded in the
  process-wide :data:`IMAGE_CACHE` and hands the pipeline a copy, so that its outputs are bit-identical
  with and without the cache. Full size: every later transform (Mosaic, RandomResize up to 2x the
  train size, the 640 px test) sees the pixels it would have seen.
- :func:`use_image_cache`: swaps it into every pipeline of a config (train, val, test, the pipeline
  switch of the last stage), so that one cache serves them all.
- :class:`ImageCacheHook`: before training or testing, estimates the cache's size from the datasets
  (their recorded width and height), turns it off with a one-line note where it would not fit in the
  memory available, and otherwise fills it in the main process, so that dataloader workers, forked
  after, share the decoded pages instead of decoding again each.
"""
from __future__ import annotations

import os
from typing import Any, Iterable

import numpy as np
from mmcv.transforms import LoadImageFromFile
from mmdet.registry import HOOKS, TRANSFORMS
from mmengine.hooks import Hook

# A cache may take at most this share of the memory available when it is filled (MemAvailable on Linux).
MEMORY_SHARE = 0.5


class DecodedImageCache:
    """Decoded images by (file, how they were decoded), in one process; counts its hits and the decodes made."""

    def __init__(self) -> None:
        self.images: dict[tuple, np.ndarray] = {}
        self.enabled = True
        self.decodes = 0
        self.hits = 0

    def get(self, key: tuple) -> np.ndarray | None:
        img = self.images.get(key) if self.enabled else None
        self.hits += img is not None
        return img

    def put(self, key: tuple, img: np.ndarray) -> None:
        self.decodes += 1
        if self.enabled:
            img = img.copy()  # the pipeline keeps the array it was handed; the cache keeps its own
            img.setflags(write=False)
            self.images[key] = img

    @property
    def nbytes(self) -> int:
        return sum(img.nbytes for img in self.images.values())

    def clear(self) -> None:
        self.images.clear()
        self.decodes = self.hits = 0


IMAGE_CACHE = DecodedImageCache()


@TRANSFORMS.register_module()
class CachedLoadImageFromFile(LoadImageFromFile):
    """``LoadImageFromFile`` that decodes each file once per process (:data:`IMAGE_CACHE`); same arguments."""

    def cache_key(self, path: str) -> tuple:
        """The file (a rewritten file is a new entry) and how it is decoded."""
        try:
            stat = os.stat(path)
            version = (stat.st_mtime_ns, stat.st_size)
        except OSError:  # not a local file (another file backend): its path alone
            version = None
        return (str(path), version, self.color_type, self.imdecode_backend, self.to_float32)

    def transform(self, results: dict) -> dict | None:
        key = self.cache_key(results["img_path"])
        img = IMAGE_CACHE.get(key)
        if img is None:
            results = super().transform(results)
            if results is not None:
                IMAGE_CACHE.put(key, results["img"])
            return results
        results["img"] = img.copy()  # later transforms may write into it
        results["img_shape"] = img.shape[:2]
        results["ori_shape"] = img.shape[:2]
        return results


def pipelines(cfg: Any) -> Iterable[list]:
    """Every pipeline list of a config: each dataloader's (inside dataset wrappers) and the hooks' switches."""
    from balloondet.engine.config import innermost_dataset

    for name in ("train_dataloader", "val_dataloader", "test_dataloader"):
        if cfg.get(name):
            yield innermost_dataset(cfg[name].dataset).get("pipeline") or []
    for hook in cfg.get("custom_hooks") or []:
        if hook.get("switch_pipeline"):
            yield hook["switch_pipeline"]


def use_image_cache(cfg: Any) -> int:
    """Load images through :class:`CachedLoadImageFromFile` in every pipeline of ``cfg`` (in place) and add
    :class:`ImageCacheHook`; returns the number of loaders swapped."""
    swapped = 0
    for pipeline in pipelines(cfg):
        for step in pipeline:
            if step.get("type") in ("LoadImageFromFile", "mmdet.LoadImageFromFile", "mmcv.LoadImageFromFile"):
                step["type"] = "CachedLoadImageFromFile"
                step.pop("_scope_", None)
                swapped += 1
    if swapped:
        cfg.custom_hooks = [*(cfg.get("custom_hooks") or []), dict(type="ImageCacheHook")]
    return swapped


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (``MemAvailable``), None where it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def dataset_images(dataset: Any) -> list[tuple[str, int, int]]:
    """``(path, height, width)`` of each image of an mmdet dataset, as its annotation file records them."""
    while hasattr(dataset, "dataset"):  # wrappers
        dataset = dataset.dataset
    infos = [dataset.get_data_info(i) for i in range(len(dataset))]  # data_list is serialised away
    return [(info["img_path"], int(info.get("height") or 0), int(info.get("width") or 0)) for info in infos]


def cache_estimate(images: Iterable[tuple[str, int, int]]) -> int:
    """Bytes the decoded colour images take (3 bytes a pixel), each file counted once."""
    return sum(3 * h * w for _, h, w in {path: (path, h, w) for path, h, w in images}.values())


def cache_fits(estimate: int, available: int | None, share: float = MEMORY_SHARE) -> tuple[bool, str]:
    """(fits, one line saying so): the cache may take ``share`` of the available memory."""
    mib = estimate / 2**20
    if available is None:
        return True, f"image cache: {mib:.0f} MiB of decoded images (available memory unknown)"
    if estimate > share * available:
        return False, (f"image cache off: the decoded images would take {mib:.0f} MiB, more than "
                       f"{share:.0%} of the {available / 2**20:.0f} MiB available; every epoch decodes them again")
    return True, f"image cache: {mib:.0f} MiB of decoded images, each decoded once"


@HOOKS.register_module()
class ImageCacheHook(Hook):
    """Sizes :data:`IMAGE_CACHE` against the memory available and fills it before the dataloaders fork.

    ``before_train`` (train and val images) and ``before_test``: one line in the log says what the cache
    holds or why it is off. Filling in the main process first lets forked workers share the pages.
    """

    priority = "VERY_HIGH"

    def __init__(self, share: float = MEMORY_SHARE) -> None:
        self.share = share

    def before_train(self, runner: Any) -> None:
        loaders = [runner.train_loop.dataloader]
        if getattr(runner, "val_loop", None) is not None:
            loaders.append(runner.val_loop.dataloader)
        self.fill(runner, loaders)

    def before_test(self, runner: Any) -> None:
        self.fill(runner, [runner.test_loop.dataloader])

    def fill(self, runner: Any, loaders: list) -> None:
        todo = []  # (the loader transform, path, height, width)
        for loader in loaders:
            transforms = getattr(getattr(loader.dataset, "pipeline", None), "transforms", [])
            for load in (t for t in transforms if isinstance(t, CachedLoadImageFromFile)):
                todo += [(load, path, h, w) for path, h, w in dataset_images(loader.dataset)]
        pending = {load.cache_key(path): (load, path, h, w) for load, path, h, w in todo}
        pending = {k: v for k, v in pending.items() if k not in IMAGE_CACHE.images}
        estimate = IMAGE_CACHE.nbytes + cache_estimate((path, h, w) for _, path, h, w in pending.values())
        fits, line = cache_fits(estimate, available_memory(), self.share)
        IMAGE_CACHE.enabled = fits
        if not fits:
            IMAGE_CACHE.clear()
        runner.logger.info(line)
        if fits:
            for load, path, _, _ in pending.values():
                load.transform({"img_path": path})
