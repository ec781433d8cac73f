"""`balloondet VERB ...`: one verb per notebook step, each a thin call into the package."""
from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Callable

from balloondet.core import defaults
from balloondet.core.errors import BalloonDetError
from balloondet.core.files import display_path

if TYPE_CHECKING:
    from balloondet.engine.detector import Detector

# --- verbs ----------------------------------------------------------------------------


def _data(a: argparse.Namespace) -> None:
    from balloondet.data.prepare import prepare_data

    prepare_data(source=a.source, root=a.data_root, synthetic=a.synthetic, seed=a.seed, force=a.force,
                 local_archive=a.local_archive, fmt=a.format, val_fraction=a.val_fraction, split_seed=a.split_seed,
                 class_attribute=a.class_attribute)


def _check_data(a: argparse.Namespace) -> None:
    from balloondet.data.health import check_data
    from balloondet.data.plot import plot_health

    report = check_data(a.data_root)
    print(report.summary())
    print(report.table())
    if report.notes:
        print(report.details())
    plot_health(report, out=a.out)
    print(f"wrote {a.out}")
    report.raise_for_faults()


def _convert(a: argparse.Namespace) -> None:
    from balloondet.data.via import convert

    coco = convert(a.via_json, a.image_dir, a.out_json, class_attribute=a.class_attribute)
    cats = ", ".join(c["name"] for c in coco["categories"])
    print(f"{a.out_json}: {len(coco['images'])} images, {len(coco['annotations'])} boxes, classes: {cats}")


def _plot_dataset(a: argparse.Namespace) -> None:
    from balloondet.data.plot import plot_dataset

    plot_dataset(a.data_root, split=a.split, n=a.n, out=a.out)
    print(f"wrote {a.out}")


def _train(a: argparse.Namespace) -> None:
    from balloondet.detect.train import train

    work_dir = train(a.config, work_dir=a.work_dir, device=a.device, epochs=a.epochs, from_scratch=a.from_scratch,
                     resume=a.resume, cfg_options=a.cfg_options, launcher=a.launcher, data_root=a.data_root,
                     precision=a.precision, quiet=a.quiet, retrain=a.retrain, load_from=a.load_from,
                     image_cache=a.image_cache)
    print(f"work dir: {display_path(work_dir)}")


def _test(a: argparse.Namespace) -> None:
    from balloondet.detect.test import evaluate_checkpoint

    if a.backend != "torch":
        from pathlib import Path

        from balloondet.deploy.backend import ExportedDetector
        from balloondet.deploy.evaluate import evaluate_exported
        from balloondet.engine.config import build_config, innermost_dataset

        cfg = build_config(a.config, data_root=a.data_root)
        data_root = a.data_root or innermost_dataset(cfg.test_dataloader.dataset).data_root
        detector = ExportedDetector.load(a.checkpoint, a.backend,
                                         classes=cfg.test_dataloader.dataset.get("metainfo", {}).get("classes"))
        evaluate_exported(detector, a.work_dir or Path(a.checkpoint).parent, data_root, bootstrap=a.bootstrap,
                          quiet=a.quiet)
        return
    evaluate_checkpoint(a.config, a.checkpoint, work_dir=a.work_dir, device=a.device, cfg_options=a.cfg_options,
                        data_root=a.data_root, precision=a.precision, quiet=a.quiet, bootstrap=a.bootstrap, tta=a.tta,
                        image_cache=a.image_cache)


def _curves(a: argparse.Namespace) -> None:
    from balloondet.detect.curves import plot_curves

    plot_curves(a.work_dir, out=a.out)
    print(f"wrote {a.out}")


def _gt_vs_pred(a: argparse.Namespace) -> None:
    from balloondet.detect.report import gt_vs_pred

    gt_vs_pred(a.work_dir, a.data_root, split=a.split, score_thr=a.score_thr, out=a.out)
    print(f"wrote {display_path(a.out)}")


def _per_class(a: argparse.Namespace) -> None:
    from balloondet.detect.per_class import ap_table, confusion_table, per_class

    record = per_class(a.work_dir, a.data_root, split=a.split, score_thr=a.score_thr, out=a.out)
    print(ap_table(record["ap"]))
    print(confusion_table(record["confusion"]["counts"], record["classes"]))
    print(f"wrote {display_path(a.out)}")


def _errors(a: argparse.Namespace) -> None:
    from balloondet.detect.error_analysis import error_analysis, errors_table, image_scores

    result = error_analysis(a.work_dir, a.data_root, split=a.split, out=a.out)
    image_scores(a.work_dir, a.data_root, split=a.split, score_thr=a.score_thr)
    print(errors_table(result))
    print(result["fix_first"])
    print(f"wrote {display_path(a.out)}, errors.json and per_image.json in {display_path(a.work_dir)}")


def _worst(a: argparse.Namespace) -> None:
    from balloondet.detect.error_analysis import per_image_table, worst_images

    _, worst = worst_images(a.work_dir, a.data_root, split=a.split, k=a.k, score_thr=a.score_thr, out=a.out)
    print(per_image_table(worst))
    print(f"wrote {display_path(a.out)}")


def _pr_curves(a: argparse.Namespace) -> None:
    from balloondet.detect.report import pr_curves

    pr_curves(a.work_dir, a.data_root, split=a.split, score_thr=a.score_thr, out=a.out)
    print(f"wrote {display_path(a.out)}")


def _box_sizes(a: argparse.Namespace) -> None:
    from balloondet.detect.report import box_sizes

    box_sizes(a.config, a.data_root, out=a.out)
    print(f"wrote {display_path(a.out)}")


def _detector(a: argparse.Namespace) -> Detector:
    """The verb's model, loaded once from its config and checkpoint (``--precision`` where the verb has it); with
    ``--backend onnx|openvino`` (where the verb has it) the exported file instead."""
    from balloondet.deploy.backend import load_backend

    return load_backend(a.config, a.checkpoint, backend=getattr(a, "backend", "torch"), device=a.device,
                        precision=getattr(a, "precision", defaults.PRECISION))


def _export(a: argparse.Namespace) -> None:
    from balloondet.deploy.export import export_model

    export_model(a.config, a.checkpoint, fmt=a.format, out=a.out)


def _benchmark(a: argparse.Namespace) -> None:
    from balloondet.deploy.benchmark import benchmark

    benchmark(a.config, a.checkpoint, data_root=a.data_root, formats=a.formats, work_dir=a.work_dir,
              score_thr=a.score_thr)


def _predict(a: argparse.Namespace) -> None:
    from balloondet.core.images import list_images
    from balloondet.detect.predict import predict

    list_images(a.source)  # a missing source is said before the model loads
    predict(_detector(a), a.source, score_thr=a.score_thr, out=a.out)
    print(f"wrote {a.out}/predictions.json")


def _featmap(a: argparse.Namespace) -> None:
    from balloondet.core.images import read_image
    from balloondet.explain.featmap import featmap

    read_image(a.image)
    featmap(_detector(a), a.image, modules=a.modules, reduction=a.reduction, topk=a.topk, out=a.out)


def _cam(a: argparse.Namespace) -> None:
    from balloondet.explain.cam import cam

    cam(_detector(a), a.image, method=a.method, target_layer=a.target_layer, topk=a.topk, score_thr=a.score_thr,
        norm_in_bbox=a.norm_in_bbox, out=a.out, target=a.target, ann_file=a.ann_file, drise_masks=a.drise_masks,
        class_name=a.class_name)


def _cam_eval(a: argparse.Namespace) -> None:
    from balloondet.explain.cam_eval import cam_eval
    from balloondet.explain.cam_eval_report import format_table

    result = cam_eval(_detector(a), a.folder, methods=a.methods, layers=a.layers, step=a.step,
                      max_images=a.max_images, baselines=not a.no_baselines,
                      randomisation=not a.no_randomisation, score_thr=a.score_thr, topk=a.topk, out=a.out,
                      drise_masks=a.drise_masks)
    print(format_table(result.rows))


def _figures(a: argparse.Namespace) -> None:
    from balloondet.jobs.readme_figures import make_figures

    make_figures(a.work_dir, data_root=a.data_root, image=a.image, out=a.out, device=a.device,
                 cam_method=a.method, score_thr=a.score_thr)


def parse_value(text: str) -> Any:
    """A notebook parameter from the command line: a Python literal ("3", "0.5", "True", "None",
    "[1, 2]", "'x'"; also true/false/none in any case), else the text itself."""
    words = {"true": True, "false": False, "none": None}
    if text.lower() in words:
        return words[text.lower()]
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _notebooks(a: argparse.Namespace) -> None:
    from balloondet.jobs.notebooks import run_notebooks

    params = {k: parse_value(v) for k, v in (a.parameter or [])}
    if a.synthetic:
        params.setdefault("synthetic", True)
    run_notebooks(params, out_dir=a.out_dir)


# --- arguments that several verbs share -----------------------------------------------


class LazyChoices(Sequence):
    """Choices that a step module owns, imported only when argparse checks or lists them.

    Keeps ``balloondet data --help`` from importing torch for ``cam``'s method names.
    """

    def __init__(self, load: Callable[[], Sequence[str]]) -> None:
        self._load = load

    def __getitem__(self, index: int) -> str:
        return tuple(self._load())[index]

    def __len__(self) -> int:
        return len(tuple(self._load()))


def _cam_methods() -> Sequence[str]:
    from balloondet.explain.methods import CAM_METHODS

    return tuple(CAM_METHODS)


def _cfg_options_action() -> type[argparse.Action]:
    """mmengine's ``DictAction`` (``KEY=VALUE`` pairs, values parsed as mmengine does), with a
    usage error instead of a traceback for a pair without ``=``."""
    from mmengine.config import DictAction

    class CfgOptions(DictAction):
        def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                     values: Sequence[str], option_string: str | None = None) -> None:
            for pair in values:
                if "=" not in pair:
                    parser.error(f"{option_string} takes KEY=VALUE pairs, got {pair!r}")
            super().__call__(parser, namespace, values, option_string)

    return CfgOptions


def _parents() -> dict[str, argparse.ArgumentParser]:
    """One parser per shared argument group, for ``add_parser(parents=...)``."""

    def parent(*parents: argparse.ArgumentParser) -> argparse.ArgumentParser:
        return argparse.ArgumentParser(add_help=False, parents=list(parents))

    p: dict[str, argparse.ArgumentParser] = {}
    p["device"] = parent()
    p["device"].add_argument("--device", default=defaults.DEVICE, choices=defaults.DEVICES,
                             help="auto: CUDA when torch sees it, else the CPU (default: %(default)s)")
    p["precision"] = parent()
    p["precision"].add_argument("--precision", default=defaults.PRECISION, choices=defaults.PRECISIONS,
                                help="auto: bf16 autocast on a CPU with native bfloat16 (AVX512-BF16/AMX), "
                                     "else fp32 (default: %(default)s)")
    p["config"] = parent()
    p["config"].add_argument("config", help=f"config file, or a config name (looked up in ${defaults.CONFIGS_ENV}, "
                                            "./configs, the source checkout's configs/)")
    p["model"] = parent(p["config"])
    p["model"].add_argument("checkpoint", help="a .pth checkpoint written by `balloondet train`")
    p["backend"] = parent()
    p["backend"].add_argument("--backend", default="torch", choices=("torch", *defaults.EXPORT_FORMATS),
                              help="torch: CHECKPOINT is a .pth; onnx, openvino: CHECKPOINT is the file `balloondet "
                                   "export` wrote (.onnx, .xml), run by ONNX Runtime or OpenVINO "
                                   "(default: %(default)s)")
    p["score_thr"] = parent()
    p["score_thr"].add_argument("--score-thr", type=float, default=defaults.SCORE_THR,
                                help="lowest detection score used (default: %(default)s)")
    p["drise_masks"] = parent()
    p["drise_masks"].add_argument("--drise-masks", type=int, metavar="N",
                                  help=f"masked images per D-RISE map (default: {defaults.DRISE_MASKS}; more: "
                                       "less noise, proportionally slower)")
    p["cfg_options"] = parent()
    p["cfg_options"].add_argument("--cfg-options", nargs="+", action=_cfg_options_action(), metavar="KEY=VALUE",
                                  help="override config entries, e.g. train_dataloader.batch_size=4")
    p["image_cache"] = parent()
    p["image_cache"].add_argument("--no-image-cache", dest="image_cache", action="store_false",
                                  default=defaults.IMAGE_CACHE,
                                  help="decode the images again each time instead of once per run (the cache turns "
                                       "itself off where memory is short)")
    p["data_root"] = parent()  # the converted dataset a verb reads or writes
    p["data_root"].add_argument("--data-root", "--root", dest="data_root", default=defaults.DATA_ROOT,
                                help="the converted dataset (default: %(default)s)")
    p["data_root_override"] = parent()  # a dataset that replaces the config's
    p["data_root_override"].add_argument("--data-root", help="converted dataset to use instead of the config's "
                                                             "(e.g. data/synthetic)")
    p["detections"] = parent(p["data_root"], p["score_thr"])  # figures drawn from `test`'s detections
    p["detections"].add_argument("work_dir", help="a work dir where `test` wrote test_detections.bbox.json")
    p["detections"].add_argument("--split", default="val", choices=["train", "val"])
    return p


def build_parser() -> argparse.ArgumentParser:
    """The ``balloondet`` argument parser, one sub-command per step."""
    from balloondet.explain.featmap import MODULES, REDUCTIONS

    shared = _parents()
    cam_methods = LazyChoices(_cam_methods)
    p = argparse.ArgumentParser(prog="balloondet", description=__doc__)
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    s = sub.add_parser("data", parents=[shared["data_root"]],
                       help="bring a data set (default: the balloon archive), check it and convert it to COCO")
    s.add_argument("--source", help="your data set: a URL, a .zip or a folder, in COCO, VIA, YOLO or Pascal VOC "
                                    "(default: the balloon archive's local copy, else its download)")
    s.add_argument("--format", choices=defaults.DATA_FORMATS, help="the source's format (default: detected)")
    s.add_argument("--val-fraction", type=float, default=defaults.VAL_FRACTION,
                   help="for a data set without train and val: the share of images put into val (default: %(default)s)")
    s.add_argument("--split-seed", type=int, default=defaults.SPLIT_SEED,
                   help="... shuffled with this seed first (default: %(default)s); written to DATA_ROOT/split.json")
    s.add_argument("--class-attribute", help="VIA: the region attribute holding the class (default: one class, "
                                             "'balloon')")
    s.add_argument("--local-archive", default=defaults.app_local_archive(),
                   help=f"local copy of the official archive, used instead of a download when it exists "
                        f"(default: ${defaults.LOCAL_ARCHIVE_ENV} if set, else {defaults.SHARED_ARCHIVE} if it exists)")
    s.add_argument("--synthetic", action="store_true", help="write a generated balloon dataset instead (no network)")
    s.add_argument("--seed", type=int, default=0, help="seed for --synthetic (default: %(default)s)")
    s.add_argument("--force", action="store_true", help="redo even when DATA_ROOT already holds the converted dataset")
    s.set_defaults(func=_data)

    s = sub.add_parser("check-data", parents=[shared["data_root"]],
                       help="health check of a converted data set: every image decoded, every box checked, counts")
    s.add_argument("--out", default=f"{defaults.FIGURES_DIR}/{defaults.HEALTH_FIGURE}",
                   help="the figure: class balance, box sizes, where the boxes lie (default: %(default)s)")
    s.set_defaults(func=_check_data)

    s = sub.add_parser("convert", help="convert a VIA 1.x/2.x export to COCO detection JSON")
    s.add_argument("via_json")
    s.add_argument("image_dir")
    s.add_argument("out_json")
    s.add_argument("--class-attribute", help="region attribute holding the class (default: single class 'balloon')")
    s.set_defaults(func=_convert)

    s = sub.add_parser("plot-dataset", parents=[shared["data_root"]],
                       help="grid of images with their polygons and boxes")
    s.add_argument("--split", default="train", choices=["train", "val"])
    s.add_argument("-n", type=int, default=8, help="number of images (default: %(default)s)")
    s.add_argument("--out", default=f"{defaults.FIGURES_DIR}/{defaults.DATASET_FIGURE}")
    s.set_defaults(func=_plot_dataset)

    s = sub.add_parser("train", parents=[shared["config"], shared["device"], shared["precision"],
                                         shared["data_root_override"], shared["cfg_options"], shared["image_cache"]],
                       help="train a detector with mmengine's Runner")
    s.add_argument("--work-dir", help=f"default: {defaults.WORK_DIRS}/CONFIG_NAME ({defaults.WORK_DIRS}/DATA_SET/"
                                      f"CONFIG_NAME with a --data-root other than {defaults.DATA_ROOT})")
    s.add_argument("--epochs", type=int, help="change the schedule length (milestones move in proportion)")
    s.add_argument("--from-scratch", action="store_true",
                   help="no pretrained weights (no load_from, no ImageNet backbone)")
    s.add_argument("--load-from", metavar="PATH_OR_URL",
                   help="fine-tune from this checkpoint (e.g. the COCO one, downloaded elsewhere) instead of the "
                        "config's; with CONFIG auto, a fine-tuning recipe. Checked before training starts")
    s.add_argument("--resume", action="store_true", help="continue from the last checkpoint in the work dir "
                   "(an interrupted run resumes anyway)")
    s.add_argument("--retrain", action="store_true", help="train again even where the work dir holds a finished "
                   "run (the earlier run moves to WORK_DIR/previous/)")
    s.add_argument("--quiet", action="store_true", help="a progress bar instead of mmengine's log on the console "
                   "(the log file keeps all of it)")
    s.add_argument("--launcher", default="none", choices=defaults.LAUNCHERS,
                   help="`pytorch` under torchrun for several GPUs or processes")
    s.set_defaults(func=_train)

    s = sub.add_parser("test", parents=[shared["model"], shared["device"], shared["precision"],
                                        shared["data_root_override"], shared["cfg_options"], shared["image_cache"],
                                        shared["backend"]],
                       help="COCO bbox metrics of a checkpoint (or an exported model) on the val split")
    s.add_argument("--work-dir", help="where metrics go (default: the checkpoint's folder)")
    s.add_argument("--quiet", action="store_true", help="only the 12-line COCO summary of mmengine's output")
    s.add_argument("--bootstrap", type=int, default=defaults.BOOTSTRAP_SAMPLES, metavar="N",
                   help="resamples of the val images for mAP's 95 %% interval, 0: none (default: %(default)s)")
    s.add_argument("--tta", action="store_true", help="test-time augmentation: RTMDet's 3 scales x flip, boxes merged "
                                                      "by NMS (6 forward passes per image)")
    s.set_defaults(func=_test)

    s = sub.add_parser("gt-vs-pred", parents=[shared["detections"]],
                       help="every val image: true positives, false positives and missed boxes (after `test`)")
    s.add_argument("--out", default=f"{defaults.FIGURES_DIR}/{defaults.GT_VS_PRED_FIGURE}")
    s.set_defaults(func=_gt_vs_pred)

    s = sub.add_parser("per-class", parents=[shared["detections"]],
                       help="AP per class and a confusion matrix with a background row and column (after `test`)")
    s.add_argument("--out", default=f"{defaults.FIGURES_DIR}/{defaults.PER_CLASS_FIGURE}")
    s.set_defaults(func=_per_class)

    s = sub.add_parser("errors", parents=[shared["detections"]],
                       help="TIDE's error types of all val detections and the AP each fix gains; TP/FP/missed "
                            "per image at --score-thr (after `test`)")
    s.add_argument("--out", default=f"{defaults.FIGURES_DIR}/{defaults.ERRORS_FIGURE}")
    s.set_defaults(func=_errors)

    s = sub.add_parser("worst", parents=[shared["detections"]],
                       help="the val images with the most false positives and missed boxes (after `test`)")
    s.add_argument("--k", type=int, default=defaults.WORST_K, help="images drawn (default: %(default)s)")
    s.add_argument("--out", default=f"{defaults.FIGURES_DIR}/{defaults.WORST_FIGURE}")
    s.set_defaults(func=_worst)

    s = sub.add_parser("pr-curves", parents=[shared["detections"]],
                       help="precision-recall at IoU 0.5 and 0.75, and a score-threshold sweep (after `test`)")
    s.add_argument("--out", default=f"{defaults.FIGURES_DIR}/{defaults.PR_FIGURE}")
    s.set_defaults(func=_pr_curves)

    s = sub.add_parser("box-sizes", parents=[shared["config"], shared["data_root"]],
                       help="box sizes at the network input and in the images, against COCO's size bands")
    s.add_argument("--out", default=f"{defaults.FIGURES_DIR}/{defaults.BOX_SIZES_FIGURE}")
    s.set_defaults(func=_box_sizes)

    s = sub.add_parser("curves", help="loss, learning rate and val mAP against epoch, from a run's logs")
    s.add_argument("work_dir")
    s.add_argument("--out", default=f"{defaults.FIGURES_DIR}/{defaults.CURVES_FIGURE}")
    s.set_defaults(func=_curves)

    s = sub.add_parser("export", parents=[shared["model"]],
                       help="the trained detector as one ONNX file or OpenVINO IR (runs without PyTorch and mmdet)")
    s.add_argument("--format", default="onnx", choices=defaults.EXPORT_FORMATS, help="(default: %(default)s)")
    s.add_argument("--out", help="the file (default: beside the checkpoint, CHECKPOINT.onnx or "
                                 "CHECKPOINT_openvino/CHECKPOINT.xml)")
    s.set_defaults(func=_export)

    s = sub.add_parser("benchmark", parents=[shared["model"], shared["data_root"], shared["score_thr"]],
                       help="every format side by side: file size, val mAP, ms per image, same detections as torch")
    s.add_argument("--formats", nargs="+", default=["torch", *defaults.EXPORT_FORMATS],
                   choices=["torch", *defaults.EXPORT_FORMATS])
    s.add_argument("--work-dir", help="where each format's test goes (default: CHECKPOINT's folder/benchmark)")
    s.set_defaults(func=_benchmark)

    s = sub.add_parser("predict", parents=[shared["model"], shared["device"], shared["precision"],
                                           shared["score_thr"], shared["backend"]],
                       help="draw detections on an image or a folder and write them as JSON")
    s.add_argument("source", metavar="IMAGE_OR_FOLDER")
    s.add_argument("--out", default=defaults.PREDICT_DIR)
    s.set_defaults(func=_predict)

    s = sub.add_parser("featmap", parents=[shared["model"], shared["device"], shared["precision"]],
                       help="backbone and neck feature maps over the image")
    s.add_argument("image")
    s.add_argument("--modules", nargs="+", default=list(MODULES), choices=MODULES)
    s.add_argument("--reduction", default="mean", choices=list(REDUCTIONS))
    s.add_argument("--topk", type=int, default=4, help="channels shown with --reduction topk")
    s.add_argument("--out", default=defaults.FIGURES_DIR, help="folder for MODULE_visualization.png")
    s.set_defaults(func=_featmap)

    s = sub.add_parser("cam", parents=[shared["model"], shared["device"], shared["score_thr"], shared["drise_masks"]],
                       help="Grad-CAM (box AM) of the predicted boxes")
    s.add_argument("image", metavar="IMAGE_OR_FOLDER",
                   help="a folder gives one figure per image in OUT and prints how focused each map is")
    s.add_argument("--method", default=defaults.CAM_METHOD, choices=cam_methods, metavar="METHOD",
                   help="%(choices)s (default: %(default)s)")
    s.add_argument("--target-layer", default=defaults.CAM_LAYER,
                   help="module name (default: the neck's stride-32 output, %(default)s)")
    s.add_argument("--topk", type=int, default=defaults.CAM_TOPK, help="explain the K highest-scoring boxes")
    s.add_argument("--class", dest="class_name", metavar="NAME",
                   help="explain only the boxes of this class (default: every class)")
    s.add_argument("--norm-in-bbox", action="store_true", help="renormalise the map inside each box")
    s.add_argument("--out", default=f"{defaults.FIGURES_DIR}/{defaults.CAM_FIGURE}",
                   help="figure file (a folder for a folder)")
    s.add_argument("--target", default=defaults.CAM_TARGET, choices=defaults.CAM_TARGETS,
                   help="boxes to explain: predicted, missed (annotated, not found) or false-positive "
                        "(found, not annotated) (default: %(default)s)")
    s.add_argument("--ann-file", help="COCO json for --target missed/false-positive "
                                      "(default: ROOT/SPLIT.json for an image in ROOT/SPLIT/)")
    s.set_defaults(func=_cam)

    s = sub.add_parser("cam-eval", parents=[shared["model"], shared["device"], shared["score_thr"],
                                            shared["drise_masks"]],
                       help="faithfulness of the CAM methods: deletion/insertion AUC, randomisation check, focus")
    s.add_argument("folder", metavar="FOLDER", help="images to explain (e.g. the val split)")
    s.add_argument("--methods", nargs="+", default=list(defaults.CAM_EVAL_METHODS), choices=cam_methods,
                   metavar="METHOD", help="%(choices)s (default: %(default)s; the README compares "
                                          f"{' '.join(defaults.CAM_COMPARED)})")
    s.add_argument("--layers", nargs="+", default=list(defaults.CAM_EVAL_LAYERS), metavar="LAYER",
                   help="target layers (default: the neck's three outputs, %(default)s)")
    s.add_argument("--step", type=float, default=defaults.CAM_EVAL_STEP,
                   help="fraction of the pixels removed or revealed per step (default: %(default)s)")
    s.add_argument("--max-images", type=int, help="evaluate the first N images only")
    s.add_argument("--topk", type=int, default=defaults.CAM_TOPK, help="explain the K highest-scoring boxes")
    s.add_argument("--no-baselines", action="store_true", help="leave out the RandomCAM and Sobel rows")
    s.add_argument("--no-randomisation", action="store_true", help="leave out the re-initialised model's check")
    s.add_argument("--out", default=defaults.CAM_EVAL_DIR,
                   help="folder for cam_eval.json, cam_eval.md and cam_eval.png (default: %(default)s)")
    s.set_defaults(func=_cam_eval)

    s = sub.add_parser("figures", parents=[shared["data_root"], shared["device"], shared["score_thr"]],
                       help="regenerate the README figures from a run's work dir")
    s.add_argument("work_dir")
    s.add_argument("--image", help="example image (default: the val image with the most balloons)")
    s.add_argument("--out", default=defaults.FIGURES_DIR)
    s.add_argument("--method", default=defaults.CAM_METHOD, choices=cam_methods, metavar="METHOD",
                   help="CAM method: %(choices)s (default: %(default)s)")
    s.set_defaults(func=_figures)

    s = sub.add_parser("notebooks", help="execute run.ipynb and analyse.ipynb top to bottom (the main job)")
    s.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"),
                   help="notebook parameter, e.g. -p epochs 10 (repeatable; VALUE is a Python literal or text)")
    s.add_argument("--synthetic", action="store_true", help="run on generated data (no network)")
    s.add_argument("--out-dir", help="write executed copies here instead of in place")
    s.set_defaults(func=_notebooks)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one verb; a ``BalloonDetError`` becomes one line on stderr and exit status 2."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except BalloonDetError as err:
        print(f"balloondet {args.verb}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
