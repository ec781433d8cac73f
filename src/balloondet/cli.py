"""`balloondet VERB ...`: one verb per notebook step, each a thin call into the package."""
from __future__ import annotations

import argparse
import sys

from .io import BalloonDataError
from .train import TrainError


def _data(a):
    from .data import prepare_data

    prepare_data(source=a.source, root=a.root, synthetic=a.synthetic, seed=a.seed, force=a.force)


def _convert(a):
    from .convert import convert

    coco = convert(a.via_json, a.image_dir, a.out_json, class_attribute=a.class_attribute)
    cats = ", ".join(c["name"] for c in coco["categories"])
    print(f"{a.out_json}: {len(coco['images'])} images, {len(coco['annotations'])} boxes, classes: {cats}")


def _plot_dataset(a):
    from .plot_dataset import plot_dataset

    plot_dataset(a.root, split=a.split, n=a.n, out=a.out)
    print(f"wrote {a.out}")


def _parse_value(text: str):
    """"3" -> 3, "0.5" -> 0.5, "True" -> True, "None" -> None, "[1,2]" -> [1, 2], else the text."""
    from mmengine.config import DictAction

    return DictAction._parse_iterable(text)


def _cfg_options(pairs):
    """``k=v`` pairs into a dict, with values parsed like mmengine's DictAction."""
    if not pairs:
        return None
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise BalloonDataError(f"--cfg-options takes key=value pairs, got {pair!r}")
        options[key] = _parse_value(value)
    return options


def _train(a):
    from .train import train

    work_dir = train(a.config, work_dir=a.work_dir, device=a.device, epochs=a.epochs, from_scratch=a.from_scratch,
                     resume=a.resume, cfg_options=_cfg_options(a.cfg_options), launcher=a.launcher,
                     data_root=a.data_root)
    print(f"work dir: {work_dir}")


def _test(a):
    from .evaluate import test

    test(a.config, a.checkpoint, work_dir=a.work_dir, device=a.device, cfg_options=_cfg_options(a.cfg_options),
         data_root=a.data_root)


def _curves(a):
    from .curves import plot_curves

    plot_curves(a.work_dir, out=a.out)
    print(f"wrote {a.out}")


def _predict(a):
    from .predict import predict

    predict(a.config, a.checkpoint, a.source, score_thr=a.score_thr, out=a.out, device=a.device)
    print(f"wrote {a.out}/predictions.json")


def _featmap(a):
    from .featmap import featmap

    featmap(a.config, a.checkpoint, a.image, modules=a.modules, reduction=a.reduction, topk=a.topk, out=a.out,
            device=a.device)


def _cam(a):
    from .cam import cam

    cam(a.config, a.checkpoint, a.image, method=a.method, target_layer=a.target_layer, topk=a.topk,
        score_thr=a.score_thr, norm_in_bbox=a.norm_in_bbox, out=a.out, device=a.device)


def _figures(a):
    from .figures import make_figures

    make_figures(a.work_dir, data_root=a.data_root, image=a.image, out=a.out, device=a.device,
                 cam_method=a.method, score_thr=a.score_thr)


def _notebooks(a):
    from .notebooks import run_notebooks

    params = {k: _parse_value(v) for k, v in (a.parameter or [])}
    if a.synthetic:
        params.setdefault("synthetic", True)
    run_notebooks(params, out_dir=a.out_dir)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="balloondet", description=__doc__)
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    s = sub.add_parser("data", help="download the balloon archive (or use a local copy) and convert it to COCO")
    s.add_argument("--source", help="URL, local .zip or extracted folder (default: local copy, else download)")
    s.add_argument("--root", default="data/balloon", help="where the dataset ends up (default: %(default)s)")
    s.add_argument("--synthetic", action="store_true", help="write a generated balloon dataset instead (no network)")
    s.add_argument("--seed", type=int, default=0, help="seed for --synthetic (default: %(default)s)")
    s.add_argument("--force", action="store_true", help="redo even when ROOT already holds the converted dataset")
    s.set_defaults(func=_data)

    s = sub.add_parser("convert", help="convert a VIA 1.x/2.x export to COCO detection JSON")
    s.add_argument("via_json")
    s.add_argument("image_dir")
    s.add_argument("out_json")
    s.add_argument("--class-attribute", help="region attribute holding the class (default: single class 'balloon')")
    s.set_defaults(func=_convert)

    s = sub.add_parser("plot-dataset", help="grid of images with their polygons and boxes")
    s.add_argument("--root", default="data/balloon")
    s.add_argument("--split", default="train", choices=["train", "val"])
    s.add_argument("-n", type=int, default=8, help="number of images (default: %(default)s)")
    s.add_argument("--out", default="figures/dataset.png")
    s.set_defaults(func=_plot_dataset)

    s = sub.add_parser("train", help="train a detector with mmengine's Runner")
    s.add_argument("config", help="config file, or a name from configs/")
    s.add_argument("--work-dir", help="default: work_dirs/CONFIG_NAME")
    s.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    s.add_argument("--epochs", type=int, help="change the schedule length (milestones move in proportion)")
    s.add_argument("--from-scratch", action="store_true", help="no pretrained weights (no load_from, no ImageNet backbone)")
    s.add_argument("--resume", action="store_true", help="continue from the last checkpoint in the work dir")
    s.add_argument("--data-root", help="converted dataset to use instead of the config's (e.g. data/synthetic)")
    s.add_argument("--launcher", default="none", choices=["none", "pytorch", "slurm", "mpi"],
                   help="`pytorch` under torchrun for several GPUs or processes")
    s.add_argument("--local-rank", "--local_rank", type=int, default=0, help=argparse.SUPPRESS)
    s.add_argument("--cfg-options", nargs="+", metavar="KEY=VALUE", help="override config entries")
    s.set_defaults(func=_train)

    s = sub.add_parser("test", help="COCO bbox metrics of a checkpoint on the val split")
    s.add_argument("config")
    s.add_argument("checkpoint")
    s.add_argument("--work-dir", help="where metrics go (default: the checkpoint's folder)")
    s.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    s.add_argument("--data-root")
    s.add_argument("--cfg-options", nargs="+", metavar="KEY=VALUE")
    s.set_defaults(func=_test)

    s = sub.add_parser("curves", help="loss, learning rate and val mAP against epoch, from a run's logs")
    s.add_argument("work_dir")
    s.add_argument("--out", default="figures/training_curves.png")
    s.set_defaults(func=_curves)

    s = sub.add_parser("predict", help="draw detections on an image or a folder and write them as JSON")
    s.add_argument("config")
    s.add_argument("checkpoint")
    s.add_argument("source", metavar="IMAGE_OR_FOLDER")
    s.add_argument("--score-thr", type=float, default=0.3)
    s.add_argument("--out", default="work_dirs/predict")
    s.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    s.set_defaults(func=_predict)

    s = sub.add_parser("featmap", help="backbone and neck feature maps over the image")
    s.add_argument("config")
    s.add_argument("checkpoint")
    s.add_argument("image")
    s.add_argument("--modules", nargs="+", default=["backbone", "neck"], choices=["backbone", "neck"])
    s.add_argument("--reduction", default="mean", choices=["mean", "max", "topk"])
    s.add_argument("--topk", type=int, default=4, help="channels shown with --reduction topk")
    s.add_argument("--out", default="figures", help="folder for MODULE_visualization.png")
    s.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    s.set_defaults(func=_featmap)

    s = sub.add_parser("cam", help="Grad-CAM (box AM) of the predicted boxes")
    s.add_argument("config")
    s.add_argument("checkpoint")
    s.add_argument("image", metavar="IMAGE_OR_FOLDER",
                   help="a folder gives one figure per image in OUT and prints how focused each map is")
    s.add_argument("--method", default="gradcam", choices=["gradcam", "gradcam++", "eigencam", "ablationcam"])
    s.add_argument("--target-layer", default="neck.out_convs.2",
                   help="module name (default: the neck's stride-32 output, %(default)s)")
    s.add_argument("--topk", type=int, default=5, help="explain the K highest-scoring boxes")
    s.add_argument("--score-thr", type=float, default=0.3)
    s.add_argument("--norm-in-bbox", action="store_true", help="renormalise the map inside each box")
    s.add_argument("--out", default="figures/grad_visualization.png", help="figure file (a folder for a folder)")
    s.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    s.set_defaults(func=_cam)

    s = sub.add_parser("figures", help="regenerate the README figures from a run's work dir")
    s.add_argument("work_dir")
    s.add_argument("--data-root", default="data/balloon")
    s.add_argument("--image", help="example image (default: the val image with the most balloons)")
    s.add_argument("--out", default="figures")
    s.add_argument("--method", default="gradcam", choices=["gradcam", "gradcam++", "eigencam", "ablationcam"])
    s.add_argument("--score-thr", type=float, default=0.3)
    s.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    s.set_defaults(func=_figures)

    s = sub.add_parser("notebooks", help="execute run.ipynb and analyse.ipynb top to bottom (the main job)")
    s.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"),
                   help="notebook parameter, e.g. -p epochs 10 (repeatable)")
    s.add_argument("--synthetic", action="store_true", help="run on generated data (no network)")
    s.add_argument("--out-dir", help="write executed copies here instead of in place")
    s.set_defaults(func=_notebooks)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (BalloonDataError, FileNotFoundError, TrainError) as err:
        print(f"balloondet {args.verb}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
