"""Every default the package, the CLI and the notebooks share, defined once.

Defaults that belong to one step stay beside it (e.g. the CAM methods in ``explain.methods.CAM_METHODS``,
the feature-map reductions in ``explain.featmap.REDUCTIONS``); this module holds the ones that
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
DATA_FORMATS = ("coco", "via", "yolo", "voc")  # what `balloondet data --source` reads (data.formats)
VAL_FRACTION = 0.2  # of a data set that comes without train and val: the share `data` puts into val
SPLIT_SEED = 0  # ... shuffled with this seed first

# --- configs, runs and devices --------------------------------------------------------
AUTO = "auto"  # as a config name: the recipe for this machine (engine.config.choose_recipe)
CPU_CONFIG = "rtmdet_tiny_cpu-scratch_balloon"  # no CUDA, no COCO checkpoint: from scratch at 224, then 320 px
CPU_FINETUNE_CONFIG = "rtmdet_tiny_cpu-finetune_balloon"  # no CUDA, the COCO checkpoint at hand: fine-tune at 320
GPU_CONFIG = "rtmdet_tiny_1xb12-40e_balloon"  # CUDA and the COCO checkpoint at hand: fine-tune it
GPU_SCRATCH_CONFIG = "rtmdet_tiny_gpu-scratch_balloon"  # CUDA, offline: from scratch at 640 px
# A checkpoint to fine-tune from must fit at least this share of the model's backbone tensors, and of its neck's
# (present, same shape): the COCO checkpoint fits all of both; another RTMDet size or family fits next to none,
# an ImageNet backbone none of the neck. Below it, fine-tuning would mostly train from scratch: refused.
PRETRAINED_PARTS = ("backbone", "neck")
PRETRAINED_FIT = 0.9
CONFIG = AUTO  # what `balloondet train` and run.ipynb train unless told otherwise
BENCH_CONFIG = CPU_CONFIG  # the benchmark times the recipe this 2-core CPU trains
CONFIGS_ENV = "BALLOONDET_CONFIGS"  # a folder of configs, searched before ./configs and the checkout's
SOURCE_ROOT = Path(__file__).resolve().parents[3]  # the checkout, when the package runs from one
WORK_DIRS = "work_dirs"  # runs go to WORK_DIRS/<config name> unless told otherwise
DEVICE = "auto"
DEVICES = ("auto", "cpu", "cuda")
LAUNCHERS = ("none", "pytorch", "slurm", "mpi")
# Inference on the CPU (predict, featmap, cam, cam-eval) with the convolutions in channels-last layout: 2026-12-04,
# 2 AVX2 cores, fp32, 640 px: model-only predict 225 -> 190 ms, one map's 38 cam-eval forwards 8.6 -> 6.7 s
CHANNELS_LAST = True
EXPORT_FORMATS = ("onnx", "openvino")  # what `balloondet export` writes and `--backend` reads besides torch
ONNX_OPSET = 17  # the ONNX opset of an export and of cam-eval's ONNX Runtime network
IMAGE_CACHE = True  # train and test decode each image once per run (engine.image_cache), memory permitting
PRECISION = "auto"  # bf16 autocast on a CPU with native bfloat16, else fp32 (engine.precision.resolve_precision)
PRECISIONS = ("auto", "fp32", "bf16")

# --- analysis -------------------------------------------------------------------------
SCORE_THR = 0.3  # detections drawn, explained and reported
CAM_LAYER = "neck.out_convs.2"  # the neck's stride-32 output (mmyolo calls it out_layers)
CAM_MISSED_LAYER = "neck.out_convs.0"  # stride 8, for missed balloons: small ones are predicted there
CAM_METHOD = "gradcam"
CAM_TOPK = 5  # boxes explained per image
CAM_TARGETS = ("predicted", "missed", "false-positive")
CAM_TARGET = "predicted"  # which boxes `cam` explains: predicted, missed (ground truth) or false-positive
# cam-eval (faithfulness): the methods and neck scales measured (strides 8, 16, 32) beside the RandomCAM and
# Sobel baselines, the deletion and insertion step (fraction of the pixels per step), where the table goes.
# A map costs 38 forward passes, ~2.5 s per image at 640 px on 2 cores (bf16): the default method's three
# scales and the baselines (7 maps) take ~4.5 min for the 13 val images. CAM_COMPARED: the README's comparison.
CAM_EVAL_METHODS = (CAM_METHOD,)
CAM_COMPARED = ("gradcam", "spatial-gradcam", "layercam")
CAM_EVAL_LAYERS = ("neck.out_convs.0", "neck.out_convs.1", "neck.out_convs.2")
CAM_EVAL_STEP = 0.05
CAM_EVAL_DIR = f"{WORK_DIRS}/cam_eval"
INFERENCE_BATCH = 4  # perturbed images per forward pass: 640 px, 2 cores: bf16 57 ms/image at 4, 73 at 18 (cache)
POINTING_TOLERANCE = 15  # px of the map (the network input): a pointing-game hit may miss a box by this much
# D-RISE (method "drise"): random masks on a DRISE_GRID x DRISE_GRID grid, each cell kept with probability
# DRISE_P, DRISE_MASKS masked copies of the image through the detector (seeded by DRISE_SEED). 200: a 640 px
# map in ~50 s on 2 AVX2 cores in fp32 (0.23 s a mask), still ahead of Grad-CAM on the 13 val images;
# 500 puts more of its energy in the boxes (0.47 against 0.39) at 2.5x the time (docs/explanations.md).
DRISE_MASKS = 200
DRISE_GRID = 16
DRISE_P = 0.5
DRISE_SEED = 0
PREDICT_DIR = f"{WORK_DIRS}/predict"
IOU_MATCH = 0.5  # a detection overlapping a box at least this much found it (ground truth vs prediction)
BOOTSTRAP_SAMPLES = 300  # resamples of the val images behind test's 95 % interval of mAP
BOOTSTRAP_SEED = 0
# `errors` (TIDE, Bolya et al. 2020): a detection is a true positive at IoU >= ERRORS_FG_IOU with a free box, a
# localisation error at ERRORS_BG_IOU <= IoU < ERRORS_FG_IOU, background below ERRORS_BG_IOU (TIDE's values)
ERRORS_FG_IOU = 0.5
ERRORS_BG_IOU = 0.1
WORST_K = 6  # images `worst` draws: those with the most false positives + missed boxes

# --- figures --------------------------------------------------------------------------
FIGURES_DIR = "figures"
DATASET_FIGURE = "dataset.png"
HEALTH_FIGURE = "data_health.png"
CURVES_FIGURE = "training_curves.png"
PREDICTION_FIGURE = "balloon.jpg"
PREVIEW_MAX_SIDE = 1280  # px: the prediction figure's longer side (the photo is 2048 px, 1.2 MB)
FEATMAP_FIGURE = "{module}_visualization.png"
CAM_FIGURE = "grad_visualization.png"  # the three neck scales, the default layer first
CAM_MISSED_FIGURE = "cam_missed.png"
DRISE_FIGURE = "gradcam_vs_drise.png"  # the default method at stride 8 beside D-RISE, same boxes
CAM_EVAL_FIGURE = "cam_eval.png"
GT_VS_PRED_FIGURE = "gt_vs_pred.jpg"  # photographs: a JPEG is a seventh of the PNG
PR_FIGURE = "pr_curves.png"
BOX_SIZES_FIGURE = "box_sizes.png"
ERRORS_FIGURE = "errors.png"
PER_CLASS_FIGURE = "per_class.png"
WORST_FIGURE = "worst.jpg"  # photographs, as GT_VS_PRED_FIGURE


def app_local_archive() -> str | None:
    """The local archive the CLI and the notebooks offer the data step: ``$BALLOONDET_LOCAL_ARCHIVE``,
    else ``SHARED_ARCHIVE`` when that file exists. (The data step itself never looks at SHARED_ARCHIVE.)"""
    if os.environ.get(LOCAL_ARCHIVE_ENV):
        return os.environ[LOCAL_ARCHIVE_ENV]
    return SHARED_ARCHIVE if Path(SHARED_ARCHIVE).is_file() else None
