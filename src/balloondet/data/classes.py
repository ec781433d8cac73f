"""One class list for every split, and ids the model can trust: ``unify``.

MMDetection's usual ways to get a custom data set wrong are all about ids and names: train and val with
different category ids (mAP 0), class order taken from each JSON (names swap silently), ids starting at 0 or
with gaps, duplicate annotation ids, annotations of a class that is not declared. Here the classes are the
training split's, in its category-id order (by name where the format has no order of its own); every split
is renumbered to category ids 1..K in that order, annotation ids to 1..N and image ids to 1..M. What cannot be
repaired without guessing stops with an error that names the file and the entry.
"""
from __future__ import annotations

from balloondet.core.errors import DataError
from balloondet.data.formats import UNSPLIT, RawSplit


def _check_ids(raw: RawSplit) -> tuple[dict[int, str], list[str]]:
    """``{category id: name}`` of one split after checking its entries; the notes about what gets renumbered."""
    coco, where, notes = raw.coco, raw.where, []
    cats: dict[int, str] = {}
    for cat in coco["categories"]:
        if not isinstance(cat, dict) or "id" not in cat or "name" not in cat:
            raise DataError(f"{where}: category {cat!r} needs an 'id' and a 'name'")
        if cat["id"] in cats:
            raise DataError(f"{where}: category id {cat['id']} is declared twice "
                            f"({cats[cat['id']]!r}, {cat['name']!r})")
        if str(cat["name"]) in cats.values():
            raise DataError(f"{where}: class name {cat['name']!r} is declared twice")
        cats[cat["id"]] = str(cat["name"])
    image_ids, names = set(), set()
    for img in coco["images"]:
        if not isinstance(img, dict) or not {"id", "file_name"} <= img.keys():
            raise DataError(f"{where}: image entry {img!r} needs an 'id' and a 'file_name'")
        if img["id"] in image_ids:
            raise DataError(f"{where}: image id {img['id']} is used twice (second: {img['file_name']!r}); "
                            "each image needs its own id")
        if img["file_name"] in names:
            raise DataError(f"{where}: image {img['file_name']!r} is listed twice")
        image_ids.add(img["id"])
        names.add(img["file_name"])
    ann_ids: dict[object, int] = {}
    for ann in coco["annotations"]:
        if not isinstance(ann, dict) or not {"image_id", "category_id", "bbox"} <= ann.keys():
            raise DataError(f"{where}: annotation {ann.get('id') if isinstance(ann, dict) else ann!r} needs "
                            "'image_id', 'category_id' and 'bbox'")
        if ann["category_id"] not in cats:
            raise DataError(f"{where}: annotation {ann.get('id')} (image {ann['image_id']}) has category id "
                            f"{ann['category_id']}, which is out of range: declared ids are {sorted(cats)}")
        if ann["image_id"] not in image_ids:
            raise DataError(f"{where}: annotation {ann.get('id')} refers to image id {ann['image_id']}, "
                            "which is not in 'images'")
        ann_ids[ann.get("id")] = ann_ids.get(ann.get("id"), 0) + 1
    dupes = [i for i, n in ann_ids.items() if n > 1]
    if dupes:
        notes.append(f"{where}: {len(dupes)} annotation id(s) used more than once (e.g. {dupes[0]}): "
                     "annotations renumbered 1..N")
    if sorted(cats) != list(range(1, len(cats) + 1)):
        notes.append(f"{where}: category ids {sorted(cats)} renumbered to 1..{len(cats)} "
                     f"({', '.join(f'{i}->{n + 1}' for n, i in enumerate(sorted(cats)))})")
    return cats, notes


def unify(splits: dict[str, RawSplit], classes: list[str] | None = None) -> tuple[list[str], list[str]]:
    """Renumber every split in place to one class list; returns (the classes, the notes of what changed).

    ``classes``: the order to use (else the training split's, by category id). A class with boxes in val
    (or any split but train) that train does not declare is an error: the model could never predict it.
    """
    checked = {split: _check_ids(raw) for split, raw in splits.items()}
    notes = [n for _, split_notes in checked.values() for n in split_notes]
    first = "train" if "train" in splits else UNSPLIT
    if classes is None:
        cats = checked[first][0]
        classes = [cats[i] for i in sorted(cats)]
    trained = {checked[first][0][a["category_id"]] for a in splits[first].coco["annotations"]}
    for split, raw in splits.items():
        cats = checked[split][0]
        used = {cats[a["category_id"]] for a in raw.coco["annotations"]}
        unknown = sorted(used - trained) if split != first else sorted(used - set(classes))
        if unknown:
            n = sum(cats[a["category_id"]] == unknown[0] for a in raw.coco["annotations"])
            raise DataError(f"{raw.where}: class {unknown[0]!r} has {n} box(es) here but none in the {first} split "
                            f"({splits[first].where}): the model could never learn it. Label it in {first}, remove "
                            "its boxes, or (for a split made by `data`) choose another --split-seed")
        renumber(raw.coco, cats, classes)
    empty = [c for c in classes if c not in trained]
    if empty:
        notes.append(f"{splits[first].where}: class(es) without a single box: {', '.join(empty)}")
    return classes, notes


def renumber(coco: dict, cats: dict[int, str], classes: list[str]) -> None:
    """Category ids 1..K in ``classes``' order, image ids 1..M in file order, annotation ids 1..N (in place)."""
    new_cat = {old: classes.index(name) + 1 for old, name in cats.items() if name in classes}
    new_img = {img["id"]: i for i, img in enumerate(coco["images"], start=1)}
    for img in coco["images"]:
        img["id"] = new_img[img["id"]]
    for i, ann in enumerate(coco["annotations"], start=1):
        ann.update(id=i, image_id=new_img[ann["image_id"]], category_id=new_cat[ann["category_id"]])
    coco["categories"] = [{"id": i, "name": n} for i, n in enumerate(classes, start=1)]
