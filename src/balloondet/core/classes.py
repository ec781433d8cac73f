"""The class list's one home: the ``categories`` of a converted data set (``ROOT/train.json``, ``ROOT/val.json``).

``balloondet data`` writes both splits with the same categories, ids 1..K in the class order; configs
(``engine.config``), the analysis, CAM and the plots read the names from here (or from a run's saved
config, which was built from here), never from a list of their own.
"""
from __future__ import annotations

import colorsys
from pathlib import Path

from balloondet.core.errors import DataError
from balloondet.core.files import load_json

SPLITS = ("train", "val")


def categories_names(coco: dict, where: str) -> tuple[str, ...]:
    """The class names of a converted COCO dict, in id order, after checking the ids are 1..K."""
    cats = sorted(coco.get("categories") or [], key=lambda c: c.get("id", 0))
    ids = [c.get("id") for c in cats]
    if ids != list(range(1, len(cats) + 1)):
        raise DataError(f"{where}: category ids {ids} are not 1..{len(cats)}; convert the data set with "
                        "`balloondet data` (it renumbers them)")
    return tuple(str(c["name"]) for c in cats)


def read_classes(data_root: str | Path) -> tuple[str, ...] | None:
    """The class names of the converted data set in ``data_root``; None when it is not converted yet.

    The two splits must declare the same classes in the same order (``balloondet data`` writes them so):
    a model trained on one order and evaluated on another would swap names silently.
    """
    root = Path(data_root)
    found = {s: categories_names(load_json(root / f"{s}.json", f"the converted {s} split"), str(root / f"{s}.json"))
             for s in SPLITS if (root / f"{s}.json").is_file()}
    if not found:
        return None
    names = list(found.values())
    if any(n != names[0] for n in names):
        raise DataError(f"{root}: train.json and val.json declare different classes "
                        f"({found.get('train')} vs {found.get('val')}); convert the data set again with "
                        "`balloondet data`")
    return names[0]


def palette(n: int) -> list[tuple[int, int, int]]:
    """``n`` distinct RGB colours, the first the crimson the balloon configs have always drawn in."""
    if n <= 1:
        return [(220, 20, 60)][:max(n, 1)]
    colours = [(220, 20, 60)]
    for i in range(1, n):
        r, g, b = colorsys.hsv_to_rgb((0.97 + i / n) % 1.0, 0.85, 0.9)
        colours.append((int(r * 255), int(g * 255), int(b * 255)))
    return colours
