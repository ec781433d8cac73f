"""Decode each image once: the same arrays as a fresh decode, one decode per image, the memory guard."""
from __future__ import annotations

import random
import types

import mmcv
import numpy as np
import pytest
import torch

from balloondet.engine import image_cache
from balloondet.engine.config import build_config
from balloondet.engine.image_cache import IMAGE_CACHE, ImageCacheHook, cache_fits, use_image_cache

RECIPE = "rtmdet_tiny_cpu-scratch_balloon"  # Mosaic, RandomResize up to 2x, crops, HSV, flips: every transform


@pytest.fixture(autouse=True)
def empty_cache():
    IMAGE_CACHE.clear()
    IMAGE_CACHE.enabled = True
    yield
    IMAGE_CACHE.clear()
    IMAGE_CACHE.enabled = True


def datasets(data_root, cached: bool):
    """The recipe's train and val datasets on ``data_root``, loading through the cache or not."""
    from mmdet.registry import DATASETS
    from mmdet.utils import register_all_modules

    register_all_modules()
    cfg = build_config(RECIPE, data_root=data_root)
    if cached:
        assert use_image_cache(cfg) == 4  # train, val, test and the last stage's switch
    return DATASETS.build(cfg.train_dataloader.dataset), DATASETS.build(cfg.val_dataloader.dataset)


def samples(dataset, seed: int, passes: int = 2) -> list:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return [dataset[i] for _ in range(passes) for i in range(len(dataset))]


def test_the_pipeline_gives_the_same_arrays_with_and_without_the_cache(synthetic_root):
    (plain, plain_val), (cached, cached_val) = datasets(synthetic_root, False), datasets(synthetic_root, True)
    assert type(cached.pipeline.transforms[0]).__name__ == "CachedLoadImageFromFile"
    for a, b in zip(samples(plain, 0) + samples(plain_val, 0, 1), samples(cached, 0) + samples(cached_val, 0, 1),
                    strict=True):
        assert torch.equal(a["inputs"], b["inputs"])  # bit-identical pixels after Mosaic, resize, crop, HSV, flip
        assert torch.equal(a["data_samples"].gt_instances.bboxes.tensor, b["data_samples"].gt_instances.bboxes.tensor)
        assert a["data_samples"].metainfo["ori_shape"] == b["data_samples"].metainfo["ori_shape"]
    assert IMAGE_CACHE.hits > 0


def test_each_image_is_decoded_once(synthetic_root, monkeypatch):
    decoded = []
    real = mmcv.imfrombytes
    monkeypatch.setattr(mmcv, "imfrombytes", lambda *a, **k: decoded.append(1) or real(*a, **k))
    train, val = datasets(synthetic_root, True)
    samples(train, 0, passes=3)
    samples(val, 0, passes=2)
    files = {ds.get_data_info(i)["img_path"] for ds in (train, val) for i in range(len(ds))}
    assert len(decoded) == IMAGE_CACHE.decodes == len(IMAGE_CACHE.images) == len(files) == len(train) + len(val)
    assert all(not img.flags.writeable for img in IMAGE_CACHE.images.values())  # handed out as copies only


def test_a_rewritten_file_is_decoded_again(synthetic_root, tmp_path):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(synthetic_root, root)
    _, val = datasets(root, True)
    first = val[0]["inputs"].clone()
    path = val.get_data_info(0)["img_path"]
    img = mmcv.imread(path)
    mmcv.imwrite(255 - img, path)  # the same name, other pixels
    assert not torch.equal(val[0]["inputs"], first)


def fake_runner(train, val):
    lines = []
    loader = lambda ds: types.SimpleNamespace(dataset=ds)  # noqa: E731
    return types.SimpleNamespace(train_loop=types.SimpleNamespace(dataloader=loader(train)),
                                 val_loop=types.SimpleNamespace(dataloader=loader(val)),
                                 logger=types.SimpleNamespace(info=lines.append)), lines


def test_the_hook_fills_the_cache_before_training(synthetic_root):
    train, val = datasets(synthetic_root, True)
    runner, lines = fake_runner(train, val)
    ImageCacheHook().before_train(runner)
    images = {train.get_data_info(i)["img_path"] for i in range(len(train))}
    images |= {val.get_data_info(i)["img_path"] for i in range(len(val))}
    assert len(IMAGE_CACHE.images) == len(images)
    assert lines == [f"image cache: {IMAGE_CACHE.nbytes / 2**20:.0f} MiB of decoded images, each decoded once"]


def test_the_memory_guard_turns_the_cache_off_in_one_line(synthetic_root, monkeypatch):
    fits, line = cache_fits(300 * 2**20, 400 * 2**20)
    assert not fits and line == ("image cache off: the decoded images would take 300 MiB, more than 50% of the "
                                 "400 MiB available; every epoch decodes them again")
    assert cache_fits(100 * 2**20, 400 * 2**20)[0]
    train, val = datasets(synthetic_root, True)
    monkeypatch.setattr(image_cache, "available_memory", lambda: 2**20)  # a megabyte left
    runner, lines = fake_runner(train, val)
    ImageCacheHook().before_train(runner)
    assert len(lines) == 1 and lines[0].startswith("image cache off") and not IMAGE_CACHE.enabled
    samples(train, 0, passes=2)
    # decoded every time (and again when a crop leaves no box and the dataset draws another), kept nowhere
    assert IMAGE_CACHE.images == {} and IMAGE_CACHE.decodes >= 2 * len(train)
