"""The dataset: the `data`, `convert` and `plot-dataset` verbs.

- ``polygons``: polygons in image pixels (ellipses sampled, clipping, area, box).
- ``via``: VGG Image Annotator exports to COCO detection JSON.
- ``synthetic``: a generated balloon dataset in the official layout (no network).
- ``prepare``: the data step: download or copy the archive, extract it safely, convert both splits.
- ``plot``: the dataset figure.
"""
