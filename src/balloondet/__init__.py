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
import warnings

__version__ = "0.1.0"

# Two deprecation warnings of the locked stack that no user can act on (they also printed this machine's
# paths into the notebooks): mmengine 0.10.7 imports pkg_resources, which setuptools >= 80.9 deprecates;
# mmdet 3.3.0's CSPNeXt and SE layers call torch.cuda.amp.autocast(enabled=False), which torch >= 2.4 deprecates.
warnings.filterwarnings("ignore", message="pkg_resources is deprecated as an API", category=UserWarning)
warnings.filterwarnings("ignore", message=r"`torch\.cuda\.amp\.autocast\(args\.\.\.\)` is deprecated",
                        category=FutureWarning)
