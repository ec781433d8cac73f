"""VIA -> COCO on small hand-written files, checked against exact expected values."""
import json
import math

import pytest
from PIL import Image

from balloondet.cli import main
from balloondet.core.errors import DataError
from balloondet.data.via import CURVE_VERTICES, convert

W, H = 100, 80
# area of a regular CURVE_VERTICES-gon inscribed in a unit circle
UNIT_NGON = 0.5 * CURVE_VERTICES * math.sin(2 * math.pi / CURVE_VERTICES)


def poly(xs, ys):
    return {"name": "polygon", "all_points_x": xs, "all_points_y": ys}


def make_images(folder, *names, size=(W, H)):
    for name in names:
        Image.new("RGB", size, (90, 120, 200)).save(folder / name)


def via1(entries):
    """VIA 1.x: {key: {filename, size, regions: {"0": region}}}"""
    return {
        f"{name}123": {"filename": name, "size": 123, "file_attributes": {},
                       "regions": {str(i): {"shape_attributes": s, "region_attributes": a}
                                   for i, (s, a) in enumerate(regions)}}
        for name, regions in entries
    }


def write(path, obj):
    path.write_text(json.dumps(obj))
    return path


def by_id(coco):
    return {a["id"]: a for a in coco["annotations"]}


def test_via1_every_shape_exact_values(tmp_path):
    make_images(tmp_path, "a.jpg", "empty.jpg")
    regions = [
        (poly([10, 50, 10], [10, 10, 40]), {}),  # right triangle, legs 40 and 30
        ({"name": "rect", "x": 20, "y": 30, "width": 40, "height": 20}, {}),
        ({"name": "circle", "cx": 50, "cy": 40, "r": 10}, {}),
        ({"name": "ellipse", "cx": 50, "cy": 40, "rx": 20, "ry": 10}, {}),
        ({"name": "ellipse", "cx": 50, "cy": 40, "rx": 20, "ry": 10, "theta": math.pi / 2}, {}),
        ({"name": "rect", "x": 80, "y": 60, "width": 40, "height": 40}, {}),  # half outside: clipped
    ]
    via = write(tmp_path / "via.json", via1([("a.jpg", regions), ("empty.jpg", [])]))
    coco = convert(via, tmp_path, tmp_path / "out.json")

    assert coco == json.loads((tmp_path / "out.json").read_text())
    assert coco["categories"] == [{"id": 1, "name": "balloon"}]
    assert coco["images"] == [
        {"id": 1, "file_name": "a.jpg", "width": W, "height": H},
        {"id": 2, "file_name": "empty.jpg", "width": W, "height": H},  # negative image kept
    ]
    anns = by_id(coco)
    assert len(anns) == 6 and all(a["image_id"] == 1 and a["iscrowd"] == 0 for a in anns.values())
    assert anns[1]["bbox"] == [10, 10, 40, 30] and anns[1]["area"] == 600
    assert anns[1]["segmentation"] == [[10, 10, 50, 10, 10, 40]]
    assert anns[2]["bbox"] == [20, 30, 40, 20] and anns[2]["area"] == 800
    assert anns[3]["bbox"] == [40, 30, 20, 20]
    assert anns[3]["area"] == pytest.approx(100 * UNIT_NGON, abs=1e-3)
    assert len(anns[3]["segmentation"][0]) == 2 * CURVE_VERTICES
    assert anns[4]["bbox"] == [30, 30, 40, 20]
    assert anns[4]["area"] == pytest.approx(200 * UNIT_NGON, abs=1e-3)
    assert anns[5]["bbox"] == pytest.approx([40, 20, 20, 40], abs=1e-3)  # rotated a quarter turn
    assert anns[6]["bbox"] == [80, 60, 20, 20] and anns[6]["area"] == 400
    for a in anns.values():  # the polygon's own area, never the box's
        assert a["area"] <= a["bbox"][2] * a["bbox"][3]


def test_via2_project_with_class_attribute(tmp_path):
    make_images(tmp_path, "b.png")
    project = {
        "_via_settings": {}, "_via_attributes": {},
        "_via_img_metadata": {
            "b.png42": {"filename": "b.png", "size": 42, "file_attributes": {}, "regions": [
                {"shape_attributes": poly([0, 10, 10, 0], [0, 0, 10, 10]), "region_attributes": {"kind": "zeppelin"}},
                {"shape_attributes": {"name": "rect", "x": 1, "y": 2, "width": 3, "height": 4},
                 "region_attributes": {"kind": {"balloon": True, "zeppelin": False}}},  # checkbox style
                {"shape_attributes": {"name": "point", "cx": 5, "cy": 5}, "region_attributes": {"kind": "balloon"}},
            ]},
        },
    }
    via = write(tmp_path / "project.json", project)
    with pytest.warns(UserWarning, match=r"unsupported shape 'point'.*b\.png42"):
        coco = convert(via, tmp_path, tmp_path / "out.json", class_attribute="kind")
    assert coco["categories"] == [{"id": 1, "name": "balloon"}, {"id": 2, "name": "zeppelin"}]  # sorted
    anns = by_id(coco)
    assert len(anns) == 2
    assert anns[1]["category_id"] == 2 and anns[1]["bbox"] == [0, 0, 10, 10] and anns[1]["area"] == 100
    assert anns[2]["category_id"] == 1 and anns[2]["bbox"] == [1, 2, 3, 4] and anns[2]["area"] == 12


def test_exif_rotated_image_reports_loader_size(tmp_path):
    img = Image.new("RGB", (60, 40))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    img.save(tmp_path / "r.jpg", exif=exif)
    via = write(tmp_path / "via.json", via1([("r.jpg", [])]))
    coco = convert(via, tmp_path, tmp_path / "out.json")
    assert (coco["images"][0]["width"], coco["images"][0]["height"]) == (40, 60)


@pytest.mark.parametrize("case, message", [
    ("malformed", "not valid JSON"),
    ("missing_image", "image not found"),
    ("unreadable_image", "unreadable image"),
    ("no_points", "without its 'all_points_y' points"),
    ("two_points", "needs at least 3 points"),
    ("outside", "no area inside"),
    ("missing_class", "no value for class attribute 'kind'"),
])
def test_bad_input_names_file_and_entry_and_writes_nothing(tmp_path, case, message):
    make_images(tmp_path, "ok.jpg")
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    via = tmp_path / "via.json"
    entries = {
        "missing_image": [("gone.jpg", [])],
        "unreadable_image": [("broken.jpg", [])],
        "no_points": [("ok.jpg", [({"name": "polygon", "all_points_x": [1, 2, 3]}, {})])],
        "two_points": [("ok.jpg", [(poly([1, 5], [1, 5]), {})])],
        "outside": [("ok.jpg", [(poly([200, 300, 250], [10, 10, 50]), {})])],
        "missing_class": [("ok.jpg", [(poly([1, 5, 1], [1, 1, 5]), {})])],
    }
    if case == "malformed":
        via.write_text('{"a.jpg1": {"filename": "a.jpg", ')
    else:
        write(via, via1(entries[case]))
    out = tmp_path / "out" / "coco.json"
    with pytest.raises(DataError, match=message) as err:
        convert(via, tmp_path, out, class_attribute="kind" if case == "missing_class" else None)
    assert str(via) in str(err.value)
    if case != "malformed":
        assert "entry '" in str(err.value)  # names the VIA entry
    assert not out.parent.exists()  # nothing written, not even the folder


def test_cli_convert_reports_error_without_traceback(tmp_path, capsys):
    via = write(tmp_path / "via.json", via1([("gone.jpg", [])]))
    assert main(["convert", str(via), str(tmp_path), str(tmp_path / "o.json")]) == 2
    err = capsys.readouterr().err
    assert "image not found" in err and "Traceback" not in err
    assert not (tmp_path / "o.json").exists()
