"""Benchmark RTMDet-tiny (config ``rtmdet_tiny_cpu-scratch_balloon``) on this machine.

Measures, at each input size (square, default 640 and 320 px):

1. training throughput (images/s): data_preprocessor + ``model.loss`` + backward + AdamW step
   on a random batch of 8 images with 2-3 random boxes each (no data loading, no augmentation);
2. inference latency (ms/image): model only (``model.predict`` on a preprocessed 1-image batch)
   and end to end from a JPEG file (``mmdet.apis.inference_detector``);
3. Grad-CAM (``balloondet.explain.cam.box_cam``) and neck feature-map capture
   (``balloondet.explain.featmap.capture``) time per image, and cam-eval's map + deletion/insertion
   curves per image and method (``balloondet.explain.cam_eval``);
4. peak memory: process max RSS and, on CUDA, ``torch.cuda.max_memory_allocated``;
5. the physical floor: FLOPs per image (mmengine's FlopAnalyzer counts one multiply-add as one
   "flop", i.e. MACs; FLOPs = 2 x MACs) over the measured peak matmul throughput of the
   device in that precision, and the ratio of the measured model-only latency to that floor
   (and, for bf16, to the fp32 floor).

Steps 1, 2 and the feature maps run once per precision (``--precisions``; default fp32 and bf16
on a CPU with native bfloat16, as ``balloondet.engine.precision`` chooses), in the same run, so the
speed-up is measured on the same machine in the same state. Grad-CAM runs in fp32 only, as the
package does.

Weights are untrained (``init_weights``: the step-0 model); timing does not depend on them,
except that the detection post-processing sees the untrained score distribution. The JPEG is a
synthetic 1024x768 balloon scene (the most common size in the balloon dataset).

Usage (from the repository root):

    .venv/bin/python bench/benchmark.py                     # full run, appends to bench/results.jsonl
    .venv/bin/python bench/benchmark.py --quick             # smoke test: 320 px, 1 warm-up + 1 timed
                                                            # iteration; the JSON line goes to a temp file
    .venv/bin/python bench/benchmark.py --device cuda --sizes 640 320 --out bench/results.jsonl

Prints an aligned table (metric, size, value, unit) and appends one JSON line to ``--out`` with
the date, the machine, the settings and every number. Other jobs on the same cores slow every
number down, the matmul peak included: run it on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

CONFIG = "rtmdet_tiny_cpu-scratch_balloon"
DEFAULT_OUT = Path(__file__).resolve().parent / "results.jsonl"
BATCH = 8
IMAGE_WH = (1024, 768)


# ---------------------------------------------------------------- settings and machine

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 320 px only, 1 warm-up + 1 timed iteration, JSON to a temp file")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--sizes", type=int, nargs="+", default=None, help="square input sizes (default 640 320)")
    p.add_argument("--out", type=Path, default=None, help=f"JSON-lines file to append to (default {DEFAULT_OUT})")
    p.add_argument("--warmup", type=int, default=2, help="untimed iterations before each measurement")
    p.add_argument("--iters", type=int, default=10, help="timed iterations per inference/CAM/featmap measurement")
    p.add_argument("--train-iters", type=int, default=5, help="timed training iterations (batches of 8)")
    p.add_argument("--matmul-seconds", type=float, default=1.0, help="how long to time the peak matmul")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--precisions", nargs="+", choices=("fp32", "bf16"), default=None,
                   help="default: fp32 and bf16 on a CPU with native bfloat16, else fp32")
    args = p.parse_args(argv)
    if args.quick:
        args.sizes = args.sizes or [320]
        args.warmup, args.iters, args.train_iters, args.matmul_seconds = 1, 1, 1, 0.3
        args.out = args.out or Path(tempfile.gettempdir()) / "balloondet_bench_quick.jsonl"
    args.sizes = args.sizes or [640, 320]
    args.out = args.out or DEFAULT_OUT
    return args


def cpu_model_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def mmcv_ops_backend() -> str:
    """Where ``mmcv._ext`` comes from: mmcv's compiled extension, or mmcv_ext's torchvision nms."""
    from mmcv.utils import ext_loader

    ext = ext_loader.load_ext("_ext", ["nms"])
    return getattr(ext, "BACKEND", "compiled mmcv")


def machine_info(device: str) -> dict:
    import mmcv
    import mmdet
    import mmengine

    info = {"platform": platform.platform(), "python": platform.python_version(), "cpu": cpu_model_name(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "mmdet": mmdet.__version__, "mmcv": mmcv.__version__, "mmengine": mmengine.__version__,
            "device": device, "mmcv_ops": mmcv_ops_backend()}
    if device == "cuda":
        info["device_name"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    else:
        info["device_name"] = info["cpu"]
    return info


# ---------------------------------------------------------------- timing helpers

def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn, warmup: int, iters: int, device: str) -> list[float]:
    """Seconds per call of ``fn`` for ``iters`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return times


def ms_per_image(times: list[float]) -> float:
    return 1000 * statistics.median(times)


def row(metric: str, size, value, unit: str) -> dict:
    return {"metric": metric, "size": size, "value": value, "unit": unit}


# ---------------------------------------------------------------- models and inputs

def init_weights_quietly(model) -> None:
    """``model.init_weights()`` without mmengine's per-parameter report on the console."""
    import logging

    from mmengine.logging import MMLogger

    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)


def build_train_model(device: str):
    """RTMDet-tiny from the config, SyncBN reverted to BN, step-0 weights, in train mode."""
    from mmdet.registry import MODELS
    from mmengine.model import revert_sync_batchnorm

    from balloondet.engine.config import build_config

    cfg = build_config(CONFIG, from_scratch=True)
    model = revert_sync_batchnorm(MODELS.build(cfg.model))
    init_weights_quietly(model)
    return model.to(device).train()


def build_inference_model(size: int, device: str):
    """``init_detector`` on the config with every test-pipeline Resize/Pad set to ``size``."""
    from mmdet.apis import init_detector

    from balloondet.engine.compat import separable_max_pools
    from balloondet.engine.config import build_config

    cfg = build_config(CONFIG, from_scratch=True)
    for step in cfg.test_dataloader.dataset.pipeline:
        if step["type"] == "Resize":
            step["scale"] = (size, size)
        elif step["type"] == "Pad":
            step["size"] = (size, size)
    with warnings.catch_warnings(record=True):  # swallows "checkpoint is None, use COCO classes by default"
        model = init_detector(cfg, None, device=device)
    init_weights_quietly(model)  # the same step-0 weights as training starts from
    return separable_max_pools(model).eval()  # as Detector.load builds it for predict, featmap, cam


def random_boxes(rng: np.random.Generator, size: int, n: int) -> torch.Tensor:
    xy = rng.uniform(0, size * 0.7, size=(n, 2))
    wh = rng.uniform(size * 0.08, size * 0.3, size=(n, 2))
    return torch.tensor(np.concatenate([xy, np.minimum(xy + wh, size - 1)], 1), dtype=torch.float32)


def random_batch(rng: np.random.Generator, size: int, batch: int = BATCH) -> dict:
    """The dataloader's output for ``batch`` random size x size images with 2-3 boxes each."""
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData

    inputs, samples = [], []
    for _ in range(batch):
        inputs.append(torch.from_numpy(rng.integers(0, 256, size=(3, size, size), dtype=np.uint8)))
        n = int(rng.integers(2, 4))
        sample = DetDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size), pad_shape=(size, size),
                                             batch_input_shape=(size, size), scale_factor=(1.0, 1.0)))
        sample.gt_instances = InstanceData(bboxes=random_boxes(rng, size, n), labels=torch.zeros(n, dtype=torch.long))
        samples.append(sample)
    return {"inputs": inputs, "data_samples": samples}


def write_test_image(path: Path, seed: int = 0) -> Path:
    import cv2

    from balloondet.data.synthetic import make_image

    img, _ = make_image(np.random.default_rng(seed), *IMAGE_WH)
    if not cv2.imwrite(str(path), img):
        raise OSError(f"cannot write {path}")
    return path


# ---------------------------------------------------------------- measurements

def reset_cuda_peak(device: str) -> None:
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()


def cuda_peak_rows(device: str, stage: str, size) -> list[dict]:
    if device != "cuda":
        return []
    return [row(f"cuda max allocated ({stage})", size, torch.cuda.max_memory_allocated() / 2**20, "MiB")]


def train_step(model, size: int, precision: str = "fp32"):
    """A no-argument function: one training step (data_preprocessor, loss, backward, AdamW) of ``model`` on a
    random batch of 8 at ``size``. bf16: the forward and the loss inside the CPU autocast of
    ``CPUAutocastOptimWrapper``, with the head's loss in fp32 (``keep_head_fp32``), as ``balloondet train`` runs it.
    """
    from balloondet.engine.precision import cpu_autocast, keep_head_fp32

    batch = random_batch(np.random.default_rng(size), size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    if precision == "bf16":
        keep_head_fp32(model)

    def step():
        data = model.data_preprocessor(batch, True)
        with cpu_autocast(enabled=precision == "bf16"):
            losses = model.loss(data["inputs"], data["data_samples"])
        loss, _ = model.parse_losses(losses)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def measure_train_throughput(model, size: int, args, device: str,
                             precision: str = "fp32") -> tuple[list[dict], list[float]]:
    """Images/s of ``train_step`` (data_preprocessor + loss + backward + AdamW step on a random batch)."""
    step = train_step(model, size, precision)
    reset_cuda_peak(device)
    times = timed(step, args.warmup, args.train_iters, device)
    rows = [row(f"train throughput [{precision}]", size, BATCH * len(times) / sum(times), "img/s"),
            row(f"train step (batch 8) [{precision}]", size, statistics.median(times), "s")]
    return rows + cuda_peak_rows(device, f"train {precision}", size), times


def detector_for(model, precision: str):
    """A ``Detector`` for inference in ``precision`` (bf16: the head's post-processing in fp32, as the package)."""
    from balloondet.engine.compat import keep_head_fp32
    from balloondet.engine.detector import Detector

    return Detector.from_model(keep_head_fp32(model) if precision == "bf16" else model, precision)


def model_only_forward(detector, inputs: torch.Tensor, sample):
    """A no-argument function: ``model.predict`` (backbone, neck, head, post-processing) on a ready batch."""
    def predict():
        with torch.no_grad(), detector.autocast():
            detector.model.predict(inputs, [sample])

    return predict


def measure_predict_latency(detector, image: Path, args, device: str) -> list[float]:
    """Model only: ``model.predict`` on a ready batch of 1."""
    return timed(model_only_forward(detector, *detector.prepare(image)), args.warmup, args.iters, device)


def measure_end_to_end_latency(detector, image: Path, args, device: str) -> list[float]:
    """From the JPEG file: decode, test pipeline, preprocessing, predict (``Detector.predict``)."""
    return timed(lambda: detector.predict(image), args.warmup, args.iters, device)


def measure_gradcam_time(detector, image: Path, args, device: str):
    """``box_cam`` (gradcam) per image, with the head's score threshold at 0 so an untrained model has boxes."""
    from balloondet.core.errors import DataError
    from balloondet.explain.cam import box_cam

    test_cfg = detector.model.bbox_head.test_cfg
    old = test_cfg.get("score_thr")
    test_cfg["score_thr"] = 0.0
    try:
        return timed(lambda: box_cam(detector, image, method="gradcam", score_thr=0.0), args.warmup, args.iters, device)
    except DataError:
        return None
    finally:
        test_cfg["score_thr"] = old


def measure_cam_eval_time(detector, image: Path, args, device: str) -> dict[str, list[float]] | None:
    """cam-eval's cost per image and method: the map (``explain``) and its deletion + insertion
    curves (``cam_eval.CAM_EVAL_STEP`` steps, through ``Detector.scorer`` as cam-eval does), on the stride-8
    neck output, every default method and the two baselines. Score threshold 0 as for Grad-CAM."""
    from balloondet.core import defaults
    from balloondet.explain.cam_eval import (
        IMAGE,
        RANDOM,
        SOBEL,
        blurred_copy,
        box_scores,
        deletion_insertion,
        fractions_for,
        map_for,
        scored_region,
    )
    from balloondet.explain.selection import select_targets
    from balloondet.explain.wrapper import predict_boxes

    model = detector.model
    inputs, sample = detector.prepare(image)
    test_cfg = model.bbox_head.test_cfg
    old = test_cfg.get("score_thr")
    test_cfg["score_thr"] = 0.0
    try:
        bboxes, labels, _ = select_targets(predict_boxes(model, inputs, sample), score_thr=0.0, topk=1)
        if len(bboxes) == 0:
            return None
        scorer = detector.scorer(inputs)  # as cam_eval scores: norms folded, ONNX Runtime on the CPU in fp32
        h, w = scored_region(model, sample)  # and on the image region, not the padding
        scored, blurred = inputs[..., :h, :w], blurred_copy(inputs, sample)[..., :h, :w]
        ends = tuple(box_scores(scorer, sample, torch.cat([scored, blurred]), bboxes, labels))
        fractions = fractions_for(defaults.CAM_EVAL_STEP)
        layer = defaults.CAM_EVAL_LAYERS[0]
        times = {}
        for method in (*defaults.CAM_COMPARED, RANDOM, SOBEL):
            def one(method: str = method) -> None:
                heatmap = map_for(model, inputs, sample, bboxes, labels, method, IMAGE if method == SOBEL else layer, 0)
                deletion_insertion(scorer, sample, scored, blurred, heatmap, bboxes, labels, fractions, ends,
                                   np.random.default_rng(0))
            times[method] = timed(one, min(args.warmup, 1), max(1, args.iters // 5), device)  # ~40 forwards each
        return times
    finally:
        test_cfg["score_thr"] = old


def measure_featmap_time(detector, image: Path, args, device: str) -> list[float]:
    """``featmap.capture`` of the three neck outputs per image (inference with forward hooks)."""
    from balloondet.explain.featmap import capture, output_layers

    layers = output_layers(detector.model, "neck")
    return timed(lambda: capture(detector, image, layers), args.warmup, args.iters, device)


def count_macs(model, size: int, device: str) -> tuple[int, int]:
    """(multiply-adds, parameters) of backbone + neck + head (``model._forward``) on one image."""
    from mmengine.analysis import FlopAnalyzer, parameter_count

    inputs = (torch.zeros(1, 3, size, size, device=device),)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # jit tracer warnings
        analyzer = FlopAnalyzer(model, inputs).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        macs = analyzer.total()
    return macs, parameter_count(model)[""]


def measure_matmul_peak(device: str, seconds: float, dtype: torch.dtype = torch.float32) -> tuple[float, int]:
    """(FLOP/s, n) of repeated n x n matmuls in ``dtype``, timed for about ``seconds``."""
    n = 8192 if device == "cuda" else 2048
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    torch.matmul(a, b)  # warm-up
    sync(device)
    reps, start = 0, time.perf_counter()
    while True:
        torch.matmul(a, b)
        reps += 1
        sync(device)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return 2 * n**3 * reps / elapsed, n


def max_rss_mib() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB on Linux


# ---------------------------------------------------------------- one size, all sizes

def benchmark_inference(size: int, image: Path, args, device: str,
                        peaks: dict[str, float]) -> tuple[list[dict], dict]:
    """Inference rows at ``size`` for every precision in ``peaks`` ({precision: matmul FLOP/s})."""
    from balloondet.engine.detector import Detector

    model = build_inference_model(size, device)
    macs, params = count_macs(model, size, device)
    rows = [row("MACs (fvcore 'flops')", size, macs / 1e9, "GMAC/img"),
            row("FLOPs (2 x MACs)", size, 2 * macs / 1e9, "GFLOP/img"),
            row("params", size, params / 1e6, "M")]
    raw = {}
    fp32_floor_ms = 1000 * 2 * macs / peaks["fp32"]
    for precision, peak in peaks.items():
        detector = detector_for(model, precision)
        reset_cuda_peak(device)
        tag = f"[{precision}]"
        raw[f"predict_{precision}"] = measure_predict_latency(detector, image, args, device)
        raw[f"end_to_end_{precision}"] = measure_end_to_end_latency(detector, image, args, device)
        raw[f"featmap_neck_{precision}"] = measure_featmap_time(detector, image, args, device)
        floor_ms = 1000 * 2 * macs / peak
        predict_ms = ms_per_image(raw[f"predict_{precision}"])
        end_to_end_ms = ms_per_image(raw[f"end_to_end_{precision}"])
        rows += [
            row(f"predict latency (model only) {tag}", size, predict_ms, "ms/img"),
            row(f"end-to-end latency (JPEG) {tag}", size, end_to_end_ms, "ms/img"),
            row(f"feature maps (neck capture) {tag}", size, ms_per_image(raw[f"featmap_neck_{precision}"]), "ms/img"),
            row(f"floor latency (FLOPs / {precision} peak)", size, floor_ms, "ms/img"),
            row(f"predict / floor {tag}", size, predict_ms / floor_ms, "x"),
            row(f"end-to-end / fp32 floor {tag}", size, end_to_end_ms / fp32_floor_ms, "x"),
        ] + cuda_peak_rows(device, f"inference {precision}", size)
    detector = Detector.from_model(model, "fp32")  # Grad-CAM's gradients stay fp32, as in the package
    reset_cuda_peak(device)
    raw["gradcam"] = measure_gradcam_time(detector, image, args, device)
    gradcam = ms_per_image(raw["gradcam"]) if raw["gradcam"] else "n/a (no box)"
    rows += [row("Grad-CAM (box_cam gradcam) [fp32]", size, gradcam, "ms/img")]
    rows += cuda_peak_rows(device, "gradcam", size)
    cam_eval_times = measure_cam_eval_time(detector, image, args, device)
    for method, times in (cam_eval_times or {}).items():
        raw[f"cam_eval_{method}"] = times
        rows.append(row(f"cam-eval map + deletion/insertion ({method}) [fp32]", size, statistics.median(times),
                        "s/img"))
    return rows, raw


def default_precisions(device: str) -> list[str]:
    """fp32, plus bf16 where ``balloondet.engine.precision`` would choose it (a CPU with native bfloat16)."""
    from balloondet.engine.precision import resolve_precision

    return ["fp32"] + (["bf16"] if resolve_precision("auto", device)[0] == "bf16" else [])


def run(args) -> tuple[list[dict], dict, dict]:
    from mmdet.utils import register_all_modules

    from balloondet.engine.config import pick_device

    device = pick_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    register_all_modules()
    machine = machine_info(device)
    precisions = args.precisions or default_precisions(device)
    machine["precisions"] = precisions
    peaks, rows = {}, []
    for precision in precisions:
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        peaks[precision], n = measure_matmul_peak(device, args.matmul_seconds, dtype)
        rows.append(row(f"matmul peak ({precision} {n}x{n})", "-", peaks[precision] / 1e9, "GFLOP/s"))
    if "fp32" not in peaks:  # the floors are also given against fp32
        peaks_fp32, _ = measure_matmul_peak(device, args.matmul_seconds)
        peaks = {"fp32": peaks_fp32, **peaks}
    raw = {}
    for precision in precisions:
        train_model = build_train_model(device)  # the same step-0 weights for each precision
        for size in args.sizes:
            train_rows, raw[f"train_{size}_{precision}"] = measure_train_throughput(train_model, size, args, device,
                                                                                    precision)
            rows += train_rows + [row("max RSS so far (after train)", size, max_rss_mib(), "MiB")]
        del train_model
    with tempfile.TemporaryDirectory() as tmp:
        image = write_test_image(Path(tmp) / "balloons.jpg")
        for size in args.sizes:
            inf_rows, inf_raw = benchmark_inference(size, image, args, device,
                                                    {p: peaks[p] for p in ("fp32", *precisions) if p in peaks})
            rows += inf_rows
            raw.update({f"{k}_{size}": v for k, v in inf_raw.items()})
    rows.append(row("peak RSS (process)", "all", max_rss_mib(), "MiB"))
    return rows, raw, machine


# ---------------------------------------------------------------- output

def format_value(value) -> str:
    if isinstance(value, str):
        return value
    return f"{value:.3g}" if abs(value) < 10 else f"{value:,.1f}"


def print_table(rows: list[dict], machine: dict) -> None:
    print(f"\nRTMDet-tiny ({CONFIG}) on {machine['device']}: {machine['device_name']}, "
          f"{machine['cpu_count']} CPUs, {machine['torch_threads']} torch threads")
    header = ("metric", "size", "value", "unit")
    cells = [header] + [(r["metric"], str(r["size"]), format_value(r["value"]), r["unit"]) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(4)]
    for i, c in enumerate(cells):
        print(f"{c[0]:<{widths[0]}}  {c[1]:>{widths[1]}}  {c[2]:>{widths[2]}}  {c[3]:<{widths[3]}}")
        if i == 0:
            print("  ".join("-" * w for w in widths))


def append_json(out: Path, args, rows: list[dict], raw: dict, machine: dict) -> None:
    settings = {"config": CONFIG, "quick": args.quick, "sizes": args.sizes, "batch": BATCH,
                "warmup": args.warmup, "iters": args.iters, "train_iters": args.train_iters,
                "matmul_seconds": args.matmul_seconds, "image_wh": IMAGE_WH, "threads": args.threads,
                "precisions": machine.get("precisions")}
    record = {"date": dt.datetime.now().astimezone().isoformat(timespec="seconds"), "machine": machine,
              "settings": settings, "results": rows, "raw_seconds": raw}
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
    print(f"\nappended one JSON line to {out}")


def main(argv=None) -> int:
    args = parse_args(argv)
    rows, raw, machine = run(args)
    print_table(rows, machine)
    append_json(args.out, args, rows, raw, machine)
    return 0


if __name__ == "__main__":
    sys.exit(main())
