"""The `test` step: COCO bbox metrics of a checkpoint on the val split, with mmdet's CocoMetric."""
from __future__ import annotations

from pathlib import Path

from balloondet.core import defaults
from balloondet.core.console import quiet_console
from balloondet.core.errors import ModelError
from balloondet.core.files import display_path, load_json, write_json_atomic
from balloondet.engine.checkpoint import allow_mmengine_checkpoints
from balloondet.engine.compat import runner_device, unformatted_config_text
from balloondet.engine.config import build_config, pick_device
from balloondet.engine.cores import set_threads
from balloondet.engine.precision import resolve_precision
from balloondet.engine.tta import use_tta

COCO_KEYS = ("bbox_mAP", "bbox_mAP_50", "bbox_mAP_75", "bbox_mAP_s", "bbox_mAP_m", "bbox_mAP_l")


def evaluate_checkpoint(config: str | Path, checkpoint: str | Path, work_dir: str | Path | None = None,
                        device: str = defaults.DEVICE, cfg_options: dict | None = None,
                        data_root: str | Path | None = None,
                        precision: str = defaults.PRECISION, quiet: bool = False,
                        bootstrap: int = defaults.BOOTSTRAP_SAMPLES, tta: bool = False,
                        image_cache: bool = defaults.IMAGE_CACHE) -> dict[str, float]:
    """Evaluate ``checkpoint``; prints the 12-line COCO summary and returns the metrics.

    Also writes ``WORK_DIR/test_metrics.json`` and the raw detections
    ``WORK_DIR/test_detections.bbox.json`` (COCO results format). (The CLI verb is `test`.)
    ``bootstrap`` resamples of the val images give a 95 % interval of bbox mAP (0: none), returned as
    ``coco/bbox_mAP_ci95_lo`` and ``_hi`` and saved as ``bbox_mAP_ci95``. ``quiet``: the summary and
    nothing else of mmengine's output (its log file keeps all of it). ``tta``: mmdet's test-time augmentation
    with RTMDet's settings (``tta.use_tta``), recorded as ``"tta"`` in test_metrics.json, beside the model's
    ``seconds_per_image`` (``engine.hooks.InferenceTimeHook``), the precision and the device.
    ``image_cache``: images decoded once per process (``engine.image_cache``): a notebook's test reuses what
    its training decoded.
    """
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise ModelError(f"checkpoint not found: {checkpoint}")
    device = pick_device(device)
    precision, why = resolve_precision(precision, device)
    if not quiet:
        print(f"precision: {why}")
    cfg = build_config(config, work_dir=work_dir or checkpoint.parent, cfg_options=cfg_options, data_root=data_root,
                       precision=precision)
    set_threads()
    cfg.load_from = str(checkpoint)
    if tta:
        use_tta(cfg)
    cfg.test_evaluator.outfile_prefix = str(Path(cfg.work_dir) / "test_detections")
    cfg.test_evaluator.format_only = False
    Path(cfg.test_evaluator.outfile_prefix + ".bbox.json").unlink(missing_ok=True)  # none of an earlier test

    from mmdet.utils import register_all_modules
    from mmengine.runner import Runner

    from balloondet.engine.checkpoint_fit import CheckpointFitHook
    from balloondet.engine.hooks import InferenceTimeHook
    from balloondet.engine.image_cache import use_image_cache

    if image_cache:
        use_image_cache(cfg)
    register_all_modules()
    allow_mmengine_checkpoints()
    with runner_device(device), unformatted_config_text(), quiet_console(quiet) as console:
        runner = Runner.from_cfg(cfg)
        console.attach(runner.logger)
        runner.register_hook(CheckpointFitHook())  # the checkpoint must fit the model
        timer = InferenceTimeHook()
        runner.register_hook(timer)
        metrics = {k: float(v) for k, v in runner.test().items()}
    if quiet:  # mmdet prints pycocotools' summary; show it without the evaluation chatter around it
        print("\n".join(line for line in console.captured.getvalue().splitlines() if line.startswith(" Average")))
    if not metrics:  # CocoMetric returns nothing when no box passed the score threshold
        print("no detections at all on the val split: every COCO metric is 0")
        metrics = {f"coco/{k}": 0.0 for k in COCO_KEYS}
    record = {"config": str(config), "checkpoint": display_path(checkpoint), "tta": tta, "metrics": dict(metrics),
              "seconds_per_image": timer.seconds_per_image, "precision": precision, "device": device}
    if not quiet and timer.seconds_per_image is not None:
        print(f"{timer.seconds_per_image:.2f} s per image for the model ({timer.images} images, {precision} on "
              f"{device}{', test-time augmentation' if tta else ''}; data loading and evaluation not counted)")
    if bootstrap:
        ci = map_interval(cfg.test_evaluator.ann_file, cfg.test_evaluator.outfile_prefix + ".bbox.json", bootstrap)
        metrics["coco/bbox_mAP_ci95_lo"], metrics["coco/bbox_mAP_ci95_hi"] = ci["ci"]
        record.update(bbox_mAP_ci95=ci["ci"], bootstrap=ci["n"], bootstrap_seed=ci["seed"])
        if not quiet:
            print(f"bbox mAP {metrics['coco/bbox_mAP']:.3f}, 95 % bootstrap interval {ci['ci'][0]:.3f}-"
                  f"{ci['ci'][1]:.3f} ({ci['n']} resamples of the {ci['images']} val images)")
    classes = cfg.test_dataloader.dataset.get("metainfo", {}).get("classes") or ()
    if len(classes) > 1 and Path(cfg.test_evaluator.outfile_prefix + ".bbox.json").is_file():
        from balloondet.detect.cocostats import load_pair
        from balloondet.detect.per_class import ap_table, per_class_ap

        # CocoMetric's classwise table, kept: per class, its boxes, AP and AP50
        rows = per_class_ap(*load_pair(cfg.test_evaluator.ann_file, cfg.test_evaluator.outfile_prefix + ".bbox.json"))
        record["per_class"] = rows
        if not quiet:
            print(ap_table(rows))
    out = Path(cfg.work_dir) / "test_metrics.json"
    write_json_atomic(record, out)
    if not quiet:
        print(f"metrics written to {display_path(out)}")
    return metrics


def map_interval(ann_file: str | Path, det_file: str | Path, n: int = defaults.BOOTSTRAP_SAMPLES) -> dict:
    """The bootstrap interval of bbox mAP of ``test``'s detections (none written: no detections)."""
    from balloondet.detect.cocostats import bootstrap_files, bootstrap_map

    if Path(det_file).is_file():
        return bootstrap_files(ann_file, det_file, n=n)
    return bootstrap_map(load_json(ann_file, "COCO ground truth"), [], n=n)


def metrics_table(metrics: dict[str, float]) -> str:
    """A small Markdown table of the headline COCO numbers (with mAP's 95 % interval when there is one)."""
    rows = [(k.replace("coco/", ""), v) for k, v in metrics.items() if k.replace("coco/", "") in COCO_KEYS]
    lo, hi = metrics.get("coco/bbox_mAP_ci95_lo"), metrics.get("coco/bbox_mAP_ci95_hi")

    def cell(key: str, value: float) -> str:
        if key == "bbox_mAP" and lo is not None and hi is not None:
            return f"{value:.3f} (95 % bootstrap interval {lo:.3f}-{hi:.3f})"
        return f"{value:.3f}"

    return "| metric | value |\n|---|---|\n" + "\n".join(f"| {k} | {cell(k, v)} |" for k, v in rows)
