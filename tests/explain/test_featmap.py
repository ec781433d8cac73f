"""The `featmap` step on the trained smoke model: layers, strides, shapes and reductions."""

import numpy as np

from balloondet.core.images import read_image
from balloondet.explain.featmap import capture, draw, featmap, output_layers

SMOKE = "rtmdet_tiny_smoke_synthetic"


def test_featmap_panels_strides_and_shapes(smoke_detector, val_images, tmp_path):
    results = featmap(smoke_detector, val_images[0], out=tmp_path)
    side = 192  # the smoke config's input: 320x240 images are resized and padded to 192x192
    for module, layers in (("backbone", ["backbone.stage2", "backbone.stage3", "backbone.stage4"]),
                           ("neck", ["neck.out_convs.0", "neck.out_convs.1", "neck.out_convs.2"])):
        maps, fig = results[module]
        assert [m.layer for m in maps] == layers
        assert [m.stride for m in maps] == [8, 16, 32]
        assert [m.shape[1:] for m in maps] == [(side // s, side // s) for s in (8, 16, 32)]
        panels = [ax for ax in fig.axes if ax.images]
        assert len(panels) == 3
        for ax, m in zip(panels, maps, strict=True):
            c, h, w = m.shape
            assert ax.get_title() == f"{m.layer}\nstride {m.stride}, {c}×{h}×{w}"
        assert (tmp_path / f"{module}_visualization.png").stat().st_size > 20_000
    assert results["neck"][0][0].shape[0] == 96  # the tiny neck's width


def test_featmap_reductions_draw_different_things(smoke_detector, val_images):
    """max shows one channel (not the mean); topk lays out K channels in a grid of image-sized panels."""
    img = read_image(val_images[0])
    maps, sample = capture(smoke_detector, val_images[0], output_layers(smoke_detector.model, "neck"))
    img_shape = sample.metainfo["img_shape"]
    mean, strongest = draw(maps[0], img, img_shape, "mean"), draw(maps[0], img, img_shape, "max")
    assert mean.shape == strongest.shape == img.shape
    assert np.abs(mean.astype(int) - strongest.astype(int)).mean() > 1
    results = featmap(smoke_detector, val_images[0], modules=["neck"], reduction="topk", topk=4, out=None)
    grids = [ax.get_images()[0].get_array().shape for ax in results["neck"][1].axes if ax.images]
    assert len(grids) == 3
    for grid in grids:  # 2 x 2 channels, each at the image's size
        assert abs(grid[0] - 2 * img.shape[0]) <= 2 and abs(grid[1] - 2 * img.shape[1]) <= 2, (grid, img.shape)
