"""Bringing your own data set: every format, the split, one class list, the health check (data sets generated here)."""
import json
import shutil

import pytest
from own_data import CLASSES, SIZE, draw, shots, truncate, write_coco, write_via, write_voc_flat, write_yolo
from PIL import Image

from balloondet.cli import main
from balloondet.core.classes import read_classes
from balloondet.core.errors import DataError
from balloondet.data.formats import detect_format
from balloondet.data.health import check_data
from balloondet.data.prepare import prepare_data


def load(root, split):
    return json.loads((root / f"{split}.json").read_text())


def boxes_by_class(coco):
    names = {c["id"]: c["name"] for c in coco["categories"]}
    out = {}
    for a in coco["annotations"]:
        out.setdefault(names[a["category_id"]], []).append(a["bbox"])
    return out


def assert_untouched(root):
    assert not root.exists()
    assert not [p for p in root.parent.iterdir() if p.name.startswith(f".{root.name}.")], "staging left behind"


# --- COCO ------------------------------------------------------------------------------
def test_coco_ids_from_zero_with_gaps_negative_duplicate_ids_grayscale(tmp_path, capsys):
    src = tmp_path / "src"
    train, val = shots(6, seed=1, negatives=1), shots(3, seed=2, prefix="v")
    cocos = write_coco(src, {"train": train, "val": val}, cat_ids={"circle": 0, "square": 2, "triangle": 5})
    cocos["train"]["annotations"][2]["id"] = cocos["train"]["annotations"][1]["id"]  # a duplicate annotation id
    (src / "train.json").write_text(json.dumps(cocos["train"]))
    draw(src / "val" / val[0].name, val[0].boxes, mode="L")  # a grayscale photo

    root = prepare_data(source=src, root=tmp_path / "out")
    out = capsys.readouterr().out

    train_out, val_out = load(root, "train"), load(root, "val")
    assert [c["name"] for c in train_out["categories"]] == list(CLASSES)  # in the source's id order
    assert train_out["categories"] == val_out["categories"] == [{"id": i, "name": c} for i, c in enumerate(CLASSES, 1)]
    assert [a["id"] for a in train_out["annotations"]] == list(range(1, len(train_out["annotations"]) + 1))
    # the same boxes under the same names: renumbering kept every box with its class
    expected = {}
    for s in train:
        for cls, box in s.boxes:
            expected.setdefault(cls, []).append(list(box))
    assert boxes_by_class(train_out) == expected
    assert len(train_out["images"]) == 7  # the negative is kept
    assert "category ids [0, 2, 5] renumbered to 1..3" in out and "annotation id(s) used more than once" in out
    assert "1 image(s) without boxes" in out and "1 grayscale" in out
    assert read_classes(root) == CLASSES
    assert (root / "val" / val[0].name).is_file() and not (root / "split.json").exists()
    assert Image.open(src / "val" / val[0].name).mode == "L"  # the user's folder is left as it was


def test_class_present_only_in_val_is_refused_naming_the_file(tmp_path):
    src = tmp_path / "src"
    train = shots(6, seed=1)
    for shot in train:
        shot.boxes = [b for b in shot.boxes if b[0] != "triangle"]  # declared in train.json, never labelled there
    cocos = write_coco(src, {"train": train, "val": shots(3, seed=2, prefix="v")})
    assert any(a["category_id"] == 3 for a in cocos["val"]["annotations"])
    with pytest.raises(DataError, match=r"val\.json: class 'triangle' has \d+ box\(es\) here but none in the train"):
        prepare_data(source=src, root=tmp_path / "out")
    assert_untouched(tmp_path / "out")


@pytest.mark.parametrize("case, message", [
    ("category out of range", r"train\.json: annotation 2 .* category id 9, which is out of range"),
    ("duplicate image id", r"train\.json: image id 1 is used twice"),
    ("truncated", r"train\.json: image 'img001\.jpg': damaged image \(image file is truncated"),
    ("box outside", r"train\.json: image 'img000\.jpg' annotation 1: box \[200, 10, 5, 5\] lies outside the 96x72"),
    ("zero size", r"annotation 1: box \[4, 10, 0, 5\] has zero or negative size"),
    ("wrong size", r"image 'img000\.jpg': the annotation says 50x50 px, the file is 96x72"),
    ("tiny", r"image 'img000\.jpg': 8x8 px: smaller than 10 px"),
])
def test_hard_faults_stop_before_anything_is_written(tmp_path, case, message):
    src = tmp_path / "src"
    cocos = write_coco(src, {"train": shots(4, seed=1), "val": shots(3, seed=2, prefix="v")})
    train, (first, second, *_) = cocos["train"], cocos["train"]["annotations"]
    if case == "category out of range":
        second["category_id"] = 9
    elif case == "duplicate image id":
        train["images"][1]["id"] = 1
    elif case == "truncated":
        truncate(src / "train" / "img001.jpg")
    elif case == "box outside":
        first["bbox"] = [200, 10, 5, 5]
    elif case == "zero size":
        first["bbox"] = [4, 10, 0, 5]
    elif case == "wrong size":
        train["images"][0].update(width=50, height=50)
    elif case == "tiny":
        Image.new("RGB", (8, 8)).save(src / "train" / "img000.jpg")
        train["images"][0].update(width=8, height=8)
        first["bbox"] = [1, 1, 3, 3]
    (src / "train.json").write_text(json.dumps(train))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("the previous data set")
    with pytest.raises(DataError, match=message):
        prepare_data(source=src, root=tmp_path / "out")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["keep.txt"]  # the old data set stands


def test_box_partly_outside_is_clipped_and_duplicate_box_dropped(tmp_path, capsys):
    src = tmp_path / "src"
    cocos = write_coco(src, {"train": shots(4, seed=1), "val": shots(3, seed=2, prefix="v")})
    anns = cocos["train"]["annotations"]
    anns[0]["bbox"] = [80, 60, 30, 20]  # reaches 14 px past the right edge and 8 past the bottom
    anns.append({**anns[1], "id": 99})  # the same box twice
    (src / "train.json").write_text(json.dumps(cocos["train"]))
    root = prepare_data(source=src, root=tmp_path / "out")
    out = capsys.readouterr().out
    kept = load(root, "train")["annotations"]
    assert kept[0]["bbox"] == [80, 60, SIZE[0] - 80, SIZE[1] - 60] and kept[0]["area"] == 16 * 12
    assert len(kept) == len(anns) - 1
    assert "1 clipped" in out and "1 duplicate box" in out


def test_exif_rotated_image_is_measured_upright(tmp_path, capsys):
    src = tmp_path / "src"
    cocos = write_coco(src, {"train": shots(3, seed=1), "val": shots(2, seed=2, prefix="v")})
    path = src / "train" / "img000.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated by 90 degrees: upright it is 72x96
    Image.open(path).save(path, exif=exif)
    with pytest.raises(DataError, match=r"says 96x72 px, the file is 72x96 \(upright\)"):
        prepare_data(source=src, root=tmp_path / "out")
    cocos["train"]["images"][0].update(width=72, height=96)
    cocos["train"]["annotations"] = [a for a in cocos["train"]["annotations"] if a["image_id"] != 1]
    (src / "train.json").write_text(json.dumps(cocos["train"]))
    prepare_data(source=src, root=tmp_path / "out")
    assert "1 EXIF-rotated" in capsys.readouterr().out


# --- YOLO ------------------------------------------------------------------------------
@pytest.mark.parametrize("roboflow", [False, True])
def test_yolo_layouts_keep_data_yaml_order_and_boxes(tmp_path, roboflow):
    order = ("triangle", "circle", "square")  # not alphabetical: the yaml's order is the class order
    train, val = shots(5, seed=3, negatives=1), shots(2, seed=4, prefix="v")
    write_yolo(tmp_path / "src", {"train": train, "valid" if roboflow else "val": val}, classes=order,
               roboflow=roboflow)
    assert detect_format(tmp_path / "src")[0] == "yolo"
    root = prepare_data(source=tmp_path / "src", root=tmp_path / "out")
    assert read_classes(root) == order
    got = boxes_by_class(load(root, "train"))
    for s in train:
        for cls, box in s.boxes:
            assert any(max(abs(a - b) for a, b in zip(g, box, strict=True)) < 0.01 for g in got[cls]), (cls, box)
    assert len(load(root, "train")["images"]) == 6 and len(load(root, "val")["images"]) == 2


def test_yolo_class_id_out_of_range_names_the_label_file(tmp_path):
    write_yolo(tmp_path / "src", {"train": shots(3, seed=3), "val": shots(2, seed=4, prefix="v")})
    (tmp_path / "src" / "labels" / "train" / "img001.txt").write_text("7 0.5 0.5 0.2 0.2\n")
    with pytest.raises(DataError, match=r"labels/train: .*img001\.jpg' contains class_id 7, outside the "
                                       r"valid range \[0, 2\]"):
        prepare_data(source=tmp_path / "src", root=tmp_path / "out")
    assert_untouched(tmp_path / "out")


def test_yolo_truncated_jpeg_is_a_fault_not_grey_pixels(tmp_path):
    write_yolo(tmp_path / "src", {"train": shots(3, seed=3), "val": shots(2, seed=4, prefix="v")})
    truncate(tmp_path / "src" / "images" / "val" / "v001.jpg", keep=0.6)
    with pytest.raises(DataError, match=r"image 'v001\.jpg': damaged image"):
        prepare_data(source=tmp_path / "src", root=tmp_path / "out")


# --- Pascal VOC, one flat folder without a split -------------------------------------------
def test_voc_flat_folder_is_split_reproducibly(tmp_path, capsys):
    items = shots(10, seed=5)
    write_voc_flat(tmp_path / "labelimg", items)
    assert detect_format(tmp_path / "labelimg")[0] == "voc"
    root = prepare_data(source=tmp_path / "labelimg", root=tmp_path / "a")
    assert "split 10 images into 8 train and 2 val (val fraction 0.2, seed 0" in capsys.readouterr().out
    record = json.loads((root / "split.json").read_text())
    assert sorted(record["train"] + record["val"]) == sorted(s.name for s in items)
    assert [i["file_name"] for i in load(root, "val")["images"]] == sorted(record["val"])
    assert read_classes(root) == tuple(sorted(CLASSES))
    # VOC's 1-based inclusive pixels come back as the boxes drawn
    by_name = {s.name: s for s in items}
    img = load(root, "train")["images"][0]
    got = sorted(a["bbox"] for a in load(root, "train")["annotations"] if a["image_id"] == img["id"])
    assert got == sorted(list(map(float, box)) for _, box in by_name[img["file_name"]].boxes)

    again = prepare_data(source=tmp_path / "labelimg", root=tmp_path / "b")
    assert json.loads((again / "split.json").read_text()) == record  # same seed, same split
    other = prepare_data(source=tmp_path / "labelimg", root=tmp_path / "c", split_seed=1, val_fraction=0.3)
    assert len(json.loads((other / "split.json").read_text())["val"]) == 3
    assert json.loads((other / "split.json").read_text())["val"] != record["val"]


def test_voc_truncated_jpeg_that_opencv_half_decodes_is_refused(tmp_path):
    write_voc_flat(tmp_path / "flat", shots(6, seed=5))
    truncate(tmp_path / "flat" / "img002.jpg", keep=0.7)
    with pytest.raises(DataError, match=r"image 'img002\.jpg': damaged image"):
        prepare_data(source=tmp_path / "flat", root=tmp_path / "out")


# --- VIA with a class attribute, the CLI, detection -------------------------------------
def test_cli_data_via_with_class_attribute_then_check_data(tmp_path, capsys):
    write_via(tmp_path / "via", {"train": shots(6, seed=6), "val": shots(3, seed=7, prefix="v")})
    root = tmp_path / "out"
    assert main(["data", "--source", str(tmp_path / "via"), "--format", "via", "--class-attribute", "shape",
                 "--root", str(root)]) == 0
    assert read_classes(root) == tuple(sorted(CLASSES))
    assert (root / "train" / "via_region_data.json").is_file()
    capsys.readouterr()
    assert main(["check-data", "--root", str(root), "--out", str(tmp_path / "health.png")]) == 0
    out = capsys.readouterr().out
    assert "health: 9 images (6 train, 3 val), 3 classes" in out and "0 fault(s)" in out
    assert (tmp_path / "health.png").stat().st_size > 10_000


def test_check_data_reports_a_file_damaged_after_conversion(tmp_path, capsys):
    write_coco(tmp_path / "src", {"train": shots(3, seed=1), "val": shots(2, seed=2, prefix="v")})
    root = prepare_data(source=tmp_path / "src", root=tmp_path / "out")
    truncate(root / "val" / "v000.jpg")
    report = check_data(root, progress=False)
    assert len(report.faults) == 1 and "v000.jpg" in report.faults[0]
    assert main(["check-data", "--root", str(root), "--out", str(tmp_path / "h.png")]) != 0
    assert "v000.jpg': damaged image" in capsys.readouterr().err


def test_unknown_layout_and_wrong_format_are_explained(tmp_path):
    (tmp_path / "photos").mkdir()
    Image.new("RGB", (20, 20)).save(tmp_path / "photos" / "a.jpg")
    with pytest.raises(DataError, match="no data set found. Expected one of: VIA"):
        prepare_data(source=tmp_path / "photos", root=tmp_path / "out")
    write_voc_flat(tmp_path / "voc", shots(4, seed=1))
    with pytest.raises(DataError, match="no YOLO data.yaml"):
        prepare_data(source=tmp_path / "voc", root=tmp_path / "out", fmt="yolo")
    assert_untouched(tmp_path / "out")


def test_zip_of_a_coco_set_with_a_wrapping_folder(tmp_path):
    write_coco(tmp_path / "pack" / "shapes", {"train": shots(4, seed=1), "val": shots(2, seed=2, prefix="v")})
    archive = shutil.make_archive(str(tmp_path / "shapes"), "zip", tmp_path / "pack")
    root = prepare_data(source=archive, root=tmp_path / "out")
    assert read_classes(root) == CLASSES and len(load(root, "val")["images"]) == 2
