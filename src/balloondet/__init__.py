"""balloondet: RTMDet-tiny on the balloon dataset, trained and explained.

The subpackages are the layers, lowest first; a module imports only from its own folder and the
folders below it (``tests/test_structure.py`` checks it):

- ``core``: errors, defaults, files and images, the console;
- ``engine`` (mmengine, mmdet, torch: configs, checkpoints, precision, the ``Detector``) and ``data``
  (the dataset), side by side;
- ``detect``: train, test, predict, and the figures of their results;
- ``explain``: feature maps, CAM and its faithfulness;
- ``jobs``: the README figures and the notebooks, which call several steps;
- ``cli`` (one verb per step), then ``__main__``.
"""
__version__ = "0.1.0"
