"""Importing balloondet silences the locked stack's two deprecation warnings, and no other."""
import subprocess
import sys

CODE = """
import warnings
import balloondet
from mmengine.utils.package_utils import is_installed
is_installed("mmcv")  # mmengine imports pkg_resources here
import torch
from mmdet.models.backbones.csp_darknet import SPPBottleneck  # calls torch.cuda.amp.autocast(enabled=False)
SPPBottleneck(8, 8)(torch.rand(1, 8, 8, 8))
warnings.warn("a warning of our own", FutureWarning)
"""


def test_the_stacks_deprecation_warnings_are_silenced_and_others_kept():
    done = subprocess.run([sys.executable, "-W", "default", "-c", CODE], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "pkg_resources" not in done.stderr and "torch.cuda.amp.autocast" not in done.stderr, done.stderr
    assert "a warning of our own" in done.stderr
