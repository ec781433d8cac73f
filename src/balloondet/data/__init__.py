"""The data set: the `data`, `check-data`, `convert` and `plot-dataset` verbs.

- ``polygons``: polygons in image pixels (ellipses sampled, clipping, area, box).
- ``via``: VGG Image Annotator exports to COCO detection JSON.
- ``formats``: a data set in COCO, VIA, YOLO or Pascal VOC (these two through supervision) as COCO dicts per split.
- ``split``: train and val for a data set that comes as one folder (seeded, written to ``split.json``).
- ``classes``: one class list for every split, ids renumbered 1..K (what cannot be repaired is an error).
- ``health``: every image decoded, every box checked, the counts per split (hard faults stop, soft ones listed).
- ``synthetic``: a generated balloon dataset in the official layout (no network).
- ``prepare``: the data step: download, copy or extract the source, then read, split, check and write it.
- ``plot``: the dataset figure and the health figure.
"""
