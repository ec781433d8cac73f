"""Export to ONNX and OpenVINO: the same detections and the same test mAP as PyTorch, the refusals, the CLI, the
benchmark, and the docs' stand-alone snippet in a process without torch and mmdet (on the trained smoke model)."""
import json
import os
import re
import subprocess
import sys

import mmcv
import numpy as np
import pytest
from conftest import REPO, SMOKE

from balloondet.cli import main
from balloondet.core.errors import ConfigError, ModelError
from balloondet.deploy.backend import ExportedDetector, load_backend
from balloondet.deploy.evaluate import agreement, evaluate_exported
from balloondet.deploy.export import export_model, read_metadata
from balloondet.detect.test import evaluate_checkpoint
from balloondet.engine.detector import Detector

pytestmark = pytest.mark.train  # the session's trained smoke model


@pytest.fixture(scope="module")
def exports(trained_smoke, tmp_path_factory):
    """The smoke checkpoint exported in both formats."""
    folder = tmp_path_factory.mktemp("exports")
    ckpt = trained_smoke["checkpoint"]
    return {"onnx": export_model(SMOKE, ckpt, "onnx", folder / "smoke.onnx"),
            "openvino": export_model(SMOKE, ckpt, "openvino", folder / "ov" / "smoke.xml"), "folder": folder}


@pytest.fixture(scope="module")
def torch_detector(trained_smoke):
    return Detector.load(SMOKE, trained_smoke["checkpoint"], device="cpu", precision="fp32")


def photos(synthetic_root):
    """Two val photos at their own size, and one of them stretched to another size and aspect (portrait)."""
    paths = sorted((synthetic_root / "val").glob("*.jpg"))[:2]
    images = [mmcv.imread(str(p)) for p in paths]
    return images + [mmcv.imresize(images[0], (150, 260))]


@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
def test_export_gives_pytorchs_detections_at_two_sizes(exports, torch_detector, synthetic_root, fmt):
    exported = ExportedDetector.load(exports[fmt], classes=torch_detector.classes)
    assert exported.classes == torch_detector.classes == ("balloon",)
    found = 0
    for bgr in photos(synthetic_root):
        reference = torch_detector.infer(bgr)
        result = agreement(reference, exported.infer(bgr))  # at the analysis threshold
        assert result["ok"], result
        found += result["count"][0]
        assert agreement(reference, exported.infer(bgr), score_thr=0.05)["ok"]  # and the weaker boxes too
    assert found >= 3  # the trained model finds balloons: the comparison compares something


def test_test_map_is_the_checkpoints_in_both_formats(exports, trained_smoke, synthetic_root, tmp_path):
    reference = evaluate_checkpoint(SMOKE, trained_smoke["checkpoint"], work_dir=tmp_path / "torch", device="cpu",
                                    data_root=synthetic_root, precision="fp32", bootstrap=0, quiet=True)
    assert reference["coco/bbox_mAP"] > 0.3  # a trained model: a mAP that means something
    for fmt in ("onnx", "openvino"):
        exported = ExportedDetector.load(exports[fmt], classes=("balloon",))
        metrics = evaluate_exported(exported, tmp_path / fmt, synthetic_root, bootstrap=0, quiet=True)
        assert abs(metrics["coco/bbox_mAP"] - reference["coco/bbox_mAP"]) <= 0.002, (fmt, metrics, reference)
        assert abs(metrics["coco/bbox_mAP_50"] - reference["coco/bbox_mAP_50"]) <= 0.002
        record = json.loads((tmp_path / fmt / "test_metrics.json").read_text())
        assert record["backend"] == fmt and (tmp_path / fmt / "test_detections.bbox.json").is_file()


def test_files_that_are_not_this_models_export_are_refused(exports, tmp_path):
    import onnx
    from onnx import TensorProto, helper

    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"<html>login</html>")
    with pytest.raises(ModelError, match=r"junk\.onnx: not a readable onnx model"):
        ExportedDetector.load(junk)
    plain = tmp_path / "plain.onnx"  # a valid ONNX model, but not one of ours
    node = helper.make_node("Identity", ["image"], ["boxes"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), str(plain))
    with pytest.raises(ModelError, match=r"plain\.onnx: not a balloondet export \(no 'balloondet' metadata\)"):
        ExportedDetector.load(plain)
    for fmt in ("onnx", "openvino"):
        with pytest.raises(ModelError, match=r"was exported for the classes balloon; this data set / config has cat, "
                                             r"dog"):
            ExportedDetector.load(exports[fmt], classes=("cat", "dog"))
    with pytest.raises(ModelError, match=r"--backend openvino reads a \.xml file"):
        ExportedDetector.load(exports["onnx"], "openvino")
    with pytest.raises(ConfigError, match=r"is an export, not a checkpoint: add --backend onnx"):
        load_backend(SMOKE, exports["onnx"], backend="torch")
    assert read_metadata(exports["onnx"])["classes"] == ["balloon"]


def test_cli_export_predict_test_and_benchmark(trained_smoke, synthetic_root, tmp_path, capsys):
    ckpt = str(trained_smoke["checkpoint"])
    out = tmp_path / "m.onnx"
    assert main(["export", SMOKE, ckpt, "--out", str(out)]) == 0
    image = str(sorted((synthetic_root / "val").glob("*.jpg"))[0])
    for backend, model in (("torch", ckpt), ("onnx", str(out))):
        # both in fp32: where the CPU has native bf16, `auto` would compare bf16 torch with the fp32 export
        assert main(["predict", SMOKE, model, image, "--backend", backend, "--device", "cpu", "--precision", "fp32",
                     "--out", str(tmp_path / backend)]) == 0
    torch_pred, onnx_pred = (json.loads((tmp_path / b / "predictions.json").read_text())[0]["detections"]
                             for b in ("torch", "onnx"))
    assert len(torch_pred) == len(onnx_pred) >= 1
    for a, b in zip(torch_pred, onnx_pred, strict=True):
        assert a["class"] == b["class"] and np.allclose(a["bbox_xyxy"], b["bbox_xyxy"], atol=1.0)
    assert (tmp_path / "onnx" / os.path.basename(image)).is_file()  # drawn too
    assert main(["test", SMOKE, str(out), "--backend", "onnx", "--data-root", str(synthetic_root),
                 "--work-dir", str(tmp_path / "test"), "--bootstrap", "0", "--quiet"]) == 0
    assert json.loads((tmp_path / "test" / "test_metrics.json").read_text())["backend"] == "onnx"
    capsys.readouterr()
    assert main(["test", SMOKE, ckpt, "--backend", "onnx"]) == 2  # a checkpoint is not an export
    assert "--backend onnx reads a .onnx file" in capsys.readouterr().err
    assert main(["benchmark", SMOKE, ckpt, "--root", str(synthetic_root), "--work-dir", str(tmp_path / "bench")]) == 0
    table = capsys.readouterr().out
    assert re.search(r"\| onnx \| [\d.]+ MB \| [\d.]+ \| [\d.]+ \| \d+ \| [\d.]+x \| yes \([1-9]\d*\) \|", table)
    assert re.search(r"\| openvino \| .* \| yes \([1-9]\d*\) \|", table), table
    rows = json.loads((tmp_path / "bench" / "benchmark.json").read_text())["rows"]
    assert [r["format"] for r in rows] == ["torch", "onnx", "openvino"] and all(r["ms_per_image"] > 0 for r in rows)
    assert len({r["map"] for r in rows}) == 1  # the same val mAP in every format


def standalone_snippet() -> str:
    text = (REPO / "docs" / "deploy.md").read_text()
    block = text.split("<!-- snippet: standalone", 1)[1]
    return block.split("```python\n", 1)[1].split("```", 1)[0]


@pytest.mark.subprocess
def test_docs_snippet_runs_with_onnx_runtime_alone(exports, synthetic_root, tmp_path):
    """The deployment note's code, run where torch, mmdet, mmcv and mmengine cannot be imported: it finds what
    the backend finds."""
    blockers = tmp_path / "blockers"
    for name in ("torch", "mmdet", "mmcv", "mmengine", "balloondet"):
        (blockers / name).mkdir(parents=True)
        (blockers / name / "__init__.py").write_text(f"raise ImportError('{name} is not available here')\n")
    script = tmp_path / "snippet.py"
    script.write_text(standalone_snippet())
    image = sorted((synthetic_root / "val").glob("*.jpg"))[0]
    env = {**os.environ, "PYTHONPATH": str(blockers)}
    check = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True, text=True)
    assert check.returncode != 0 and "torch is not available here" in check.stderr
    done = subprocess.run([sys.executable, str(script), str(exports["onnx"]), str(image), str(tmp_path / "drawn.jpg")],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = [line.split() for line in done.stdout.splitlines()]
    boxes, scores, labels = ExportedDetector.load(exports["onnx"]).infer(mmcv.imread(str(image)))
    keep = scores >= 0.3
    assert len(lines) == int(keep.sum()) >= 1
    for (name, score, *box), ref_box, ref_score in zip(lines, boxes[keep], scores[keep], strict=True):
        assert name == "balloon" and abs(float(score) - ref_score) < 1e-3
        assert np.allclose([float(v) for v in box], ref_box, atol=0.1)
    assert (tmp_path / "drawn.jpg").stat().st_size > 1000
