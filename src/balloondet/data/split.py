"""Divide a data set that comes as one folder into train and val: ``split_images``.

A fixed seed and a stated fraction: the same files always give the same split (the images are ordered
by file name before a seeded shuffle), and ``split.json`` beside the converted data says which image went
where, so a split can be read, reproduced or reused.
"""
from __future__ import annotations

import math
import random

from balloondet.core import defaults
from balloondet.core.errors import DataError
from balloondet.data.formats import RawSplit

SPLIT_FILE = "split.json"


def split_images(raw: RawSplit, val_fraction: float = defaults.VAL_FRACTION, seed: int = defaults.SPLIT_SEED
                 ) -> tuple[dict[str, RawSplit], dict]:
    """``({"train": ..., "val": ...}, the record for split.json)``: images shuffled by ``seed``, the first
    ``ceil(val_fraction * n)`` (at least one, at most n - 1) into val, the rest into train, each in file order."""
    if not 0 < val_fraction < 1:
        raise DataError(f"--val-fraction {val_fraction}: must lie between 0 and 1")
    images = sorted(raw.coco["images"], key=lambda img: img["file_name"])
    if len(images) < 2:
        raise DataError(f"{raw.where}: {len(images)} image(s): a split into train and val needs at least 2")
    order = list(images)
    random.Random(seed).shuffle(order)
    n_val = min(len(images) - 1, max(1, math.ceil(val_fraction * len(images))))
    val_names = {img["file_name"] for img in order[:n_val]}
    out, record = {}, {"seed": seed, "val_fraction": val_fraction, "source": raw.where}
    for split, keep in (("train", lambda n: n not in val_names), ("val", lambda n: n in val_names)):
        chosen = [img for img in images if keep(img["file_name"])]
        ids = {img["id"] for img in chosen}
        anns = [a for a in raw.coco["annotations"] if a["image_id"] in ids]
        coco = {**raw.coco, "images": chosen, "annotations": anns}
        out[split] = RawSplit(coco, raw.image_dir, f"{raw.where} ({split} part of the split)")
        record[split] = [img["file_name"] for img in chosen]
    return out, record


def describe(record: dict) -> str:
    """One line: how the split was made."""
    return (f"split {len(record['train']) + len(record['val'])} images into {len(record['train'])} train and "
            f"{len(record['val'])} val (val fraction {record['val_fraction']}, seed {record['seed']}; "
            f"change with --val-fraction and --split-seed)")
