"""The synthetic dataset: deterministic for a seed, and sane as a detection dataset."""
import json

from conftest import check_coco

from balloondet.data.prepare import prepare_data


def test_synthetic_is_deterministic(tmp_path):
    a = prepare_data(root=tmp_path / "a", synthetic=True, seed=3)
    b = prepare_data(root=tmp_path / "b", synthetic=True, seed=3)
    c = prepare_data(root=tmp_path / "c", synthetic=True, seed=4)
    assert (a / "train.json").read_text() == (b / "train.json").read_text()
    assert (a / "train.json").read_text() != (c / "train.json").read_text()
    img = json.loads((a / "train.json").read_text())["images"][0]["file_name"]
    assert (a / "train" / img).read_bytes() == (b / "train" / img).read_bytes()
    via = json.loads((a / "train" / "via_region_data.json").read_text())
    assert all(e["size"] == (a / "train" / e["filename"]).stat().st_size for e in via.values())


def test_synthetic_dataset_is_sane(synthetic_root):
    n_boxes = len(json.loads((synthetic_root / "train.json").read_text())["annotations"])
    coco = check_coco(synthetic_root, "train", 48, n_boxes)
    per_image = [sum(a["image_id"] == img["id"] for a in coco["annotations"]) for img in coco["images"]]
    assert sum(per_image) >= len(per_image)  # on average at least one balloon per image
    assert max(per_image) > 1  # several balloons in some images
