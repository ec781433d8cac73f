"""Every default the package, the CLI and the notebooks share, defined once.

Defaults that belong to one step stay beside it (e.g. the CAM methods in ``cam.CAM_METHODS``,
the feature-map reductions in ``featmap.REDUCTIONS``); this module holds the ones that
several layers use.
"""
from __future__ import annotations

import os
from pathlib import Path

# --- data -----------------------------------------------------------------------------
DATA_ROOT = "data/balloon"  # where `balloondet data` puts the converted dataset
LOCAL_ARCHIVE_ENV = "BALLOONDET_LOCAL_ARCHIVE"  # a local copy of balloon_dataset.zip, used before any download
# Where the CLI and the notebooks look for a local copy of the archive when the variable above is
# unset (relative to the working directory: beside the checkout). The library never looks there itself.
SHARED_ARCHIVE = "../shared/data/balloon_dataset.zip"

# --- configs, runs and devices --------------------------------------------------------
AUTO = "auto"  # as a config name: the recipe for this machine (config.choose_recipe)
CPU_CONFIG = "rtmdet_tiny_cpu-scratch_balloon"  # no CUDA: from scratch at 320 px
GPU_CONFIG = "rtmdet_tiny_1xb12-40e_balloon"  # CUDA and the COCO checkpoint at hand: fine-tune it
GPU_SCRATCH_CONFIG = "rtmdet_tiny_gpu-scratch_balloon"  # CUDA, offline: from scratch at 640 px
CONFIG = AUTO  # what `balloondet train` and run.ipynb train unless told otherwise
BENCH_CONFIG = CPU_CONFIG  # the benchmark times the recipe this 2-core CPU trains
CONFIGS_ENV = "BALLOONDET_CONFIGS"  # a folder of configs, searched before ./configs and the checkout's
SOURCE_ROOT = Path(__file__).resolve().parents[2]  # the checkout, when the package runs from one
WORK_DIRS = "work_dirs"  # runs go to WORK_DIRS/<config name> unless told otherwise
DEVICE = "auto"
DEVICES = ("auto", "cpu", "cuda")
LAUNCHERS = ("none", "pytorch", "slurm", "mpi")

# --- analysis -------------------------------------------------------------------------
SCORE_THR = 0.3  # detections drawn, explained and reported
CAM_LAYER = "neck.out_convs.2"  # the neck's stride-32 output (mmyolo calls it out_layers)
CAM_METHOD = "gradcam"
CAM_TOPK = 5  # boxes explained per image
PREDICT_DIR = f"{WORK_DIRS}/predict"

# --- figures --------------------------------------------------------------------------
FIGURES_DIR = "figures"
DATASET_FIGURE = "dataset.png"
CURVES_FIGURE = "training_curves.png"
PREDICTION_FIGURE = "balloon.jpg"
FEATMAP_FIGURE = "{module}_visualization.png"
CAM_FIGURE = "grad_visualization.png"


def app_local_archive() -> str | None:
    """The local archive the CLI and the notebooks offer the data step: ``$BALLOONDET_LOCAL_ARCHIVE``,
    else ``SHARED_ARCHIVE`` when that file exists. (The data step itself never looks at SHARED_ARCHIVE.)"""
    if os.environ.get(LOCAL_ARCHIVE_ENV):
        return os.environ[LOCAL_ARCHIVE_ENV]
    return SHARED_ARCHIVE if Path(SHARED_ARCHIVE).is_file() else None
