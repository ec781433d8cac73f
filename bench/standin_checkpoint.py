"""A stand-in for the COCO checkpoint: RTMDet-tiny for COCO's 80 classes, random weights, saved in the model
zoo's layout (``meta``, ``state_dict``). It times a fine-tune honestly (the time does not depend on the weights'
values) where the real checkpoint cannot be downloaded; its mAP means nothing.

    .venv/bin/python bench/standin_checkpoint.py work_dirs/standin_coco.pth
    .venv/bin/balloondet train rtmdet_tiny_cpu-finetune_balloon --load-from work_dirs/standin_coco.pth --quiet
"""
from __future__ import annotations

import argparse
from pathlib import Path


def make_standin(out: str | Path, seed: int = 0, num_classes: int = 80) -> Path:
    """Write the stand-in checkpoint to ``out``; returns its path."""
    import torch
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    from balloondet.core import defaults
    from balloondet.engine.config import build_config

    register_all_modules()
    cfg = build_config(defaults.GPU_CONFIG)  # mmdet's COCO RTMDet-tiny but for its class count
    cfg.model.bbox_head.num_classes = num_classes
    torch.manual_seed(seed)
    model = MODELS.build(cfg.model)
    model.init_weights()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"meta": {"epoch": 300, "note": "stand-in: random weights"}, "state_dict": model.state_dict()}, out)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", help="where to write the .pth")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-classes", type=int, default=80, help="80: COCO's (default)")
    a = p.parse_args(argv)
    print(f"wrote {make_standin(a.out, a.seed, a.num_classes)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
