"""`balloondet VERB ...`: one verb per notebook step, each a thin call into the package."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .io import BalloonDataError


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

    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (BalloonDataError, FileNotFoundError) as err:
        print(f"balloondet {args.verb}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
