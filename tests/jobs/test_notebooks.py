"""Both notebooks execute top to bottom (papermill) on synthetic data."""
import base64
import json

import pytest
from conftest import REPO

from balloondet.jobs.notebooks import run_notebook

pytestmark = pytest.mark.notebook


def outputs(nb_path):
    nb = json.loads(nb_path.read_text())
    texts, images = [], 0
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            assert out["output_type"] != "error", out
            texts.append(out.get("text", "") if isinstance(out.get("text", ""), str) else "".join(out["text"]))
            data = out.get("data", {})
            texts.append("".join(data.get("text/markdown", "")))
            texts.append("".join(data.get("text/plain", "")) if "image/png" not in data else "")
            images += "image/png" in data or "image/jpeg" in data
    return "\n".join(texts), images


def shows_saved_files(nb_path, folder):
    """Every image the notebook shows is, byte for byte, a file it saved into ``folder`` (io.save_figure)."""
    saved = {path.read_bytes() for path in folder.iterdir() if path.suffix in (".png", ".jpg")}
    for cell in json.loads(nb_path.read_text())["cells"]:
        for out in cell.get("outputs", []):
            for mime, data in out.get("data", {}).items():
                if mime.startswith("image/"):
                    assert base64.b64decode("".join(data)) in saved, ("".join(cell["source"]), mime)


def test_run_notebook_on_synthetic_data(tmp_path, coco_head_state_dict):
    """Fine-tuned from a COCO-shaped checkpoint given as the notebook's load_from (a file downloaded elsewhere)."""
    import torch

    torch.save({"state_dict": coco_head_state_dict}, tmp_path / "coco.pth")
    params = {"synthetic": True, "data_root": str(tmp_path / "data"), "config": "rtmdet_tiny_smoke_synthetic",
              "epochs": 2, "device": "cpu", "work_dir": str(tmp_path / "run"), "figures_dir": str(tmp_path / "figs"),
              "load_from": str(tmp_path / "coco.pth")}
    (tmp_path / "figs").mkdir()
    out = tmp_path / "run.ipynb"
    run_notebook(REPO / "run.ipynb", params, out, cwd=REPO, log_output=False)
    text, images = outputs(out)
    assert "| bbox_mAP |" in text and "| bbox_mAP_50 |" in text  # the metrics table
    assert "train: 48 images" in text
    assert "coco.pth: backbone 100 %" in text and "neck 100 %" in text  # checked before training
    assert images >= 5  # dataset, box sizes, ground truth vs predictions, precision-recall, training curves
    for name in ("dataset.png", "box_sizes.png", "gt_vs_pred.jpg", "pr_curves.png", "training_curves.png"):
        assert (tmp_path / "figs" / name).is_file(), name
    shows_saved_files(out, tmp_path / "figs")
    assert (tmp_path / "run" / "test_metrics.json").is_file()
    train_cell = next(c for c in json.loads(out.read_text())["cells"] if "quiet=True, retrain" in "".join(c["source"]))
    # the bar is a display output updated in place (hooks.NotebookLine); print()s are streams
    train_text = "".join("".join(o.get("text", "") or o.get("data", {}).get("text/plain", ""))
                         for o in train_cell["outputs"])
    assert len(train_text.splitlines()) <= 40, train_text  # a progress bar, not mmengine's log
    assert "100%" in train_text, train_text


def test_analyse_notebook_with_trained_checkpoint(trained_smoke, synthetic_root, tmp_path):
    params = {"config": "rtmdet_tiny_smoke_synthetic", "work_dir": str(trained_smoke["work_dir"]),
              "checkpoint": str(trained_smoke["checkpoint"]), "data_root": str(synthetic_root), "device": "cpu",
              "figures_dir": str(tmp_path), "cam_eval_images": 2, "cam_eval_step": 0.25}
    out = tmp_path / "analyse.ipynb"
    run_notebook(REPO / "analyse.ipynb", params, out, cwd=REPO, log_output=False)
    text, images = outputs(out)
    assert images >= 5  # prediction, backbone, neck, Grad-CAM at three scales, cam-eval curves
    for name in ("balloon.jpg", "backbone_visualization.png", "neck_visualization.png", "grad_visualization.png",
                 "cam_eval.png"):
        assert (tmp_path / name).stat().st_size > 5_000, name
    shows_saved_files(out, tmp_path)
    assert "box(es) explained; focus stride 32" in text  # the three-scale Grad-CAM's summary
    assert "| gradcam | neck.out_convs.0 | 8 |" in text and "| sobel | image |" in text  # the cam-eval table
    nb = json.loads(out.read_text())
    missed_cell = next(c for c in nb["cells"] if 'target="missed"' in "".join(c["source"]))
    shown = [o for o in missed_cell["outputs"] if o["output_type"] == "display_data"]
    assert len(shown) <= 1  # the first missed balloon, not one figure per image


@pytest.mark.parametrize("name", ["run.ipynb", "analyse.ipynb"])
def test_committed_outputs_are_readable(name):
    """What a reader sees on the repository: no terminal escapes, no machine paths, no pages of logs."""
    nb = json.loads((REPO / name).read_text())
    text = json.dumps(nb)
    assert "\\u001b" not in text and "\x1b" not in text
    for root in ("/work/", "/root/", "/home/", "/tmp/", "site-packages/"):
        assert root not in text.replace("<site-packages>/", ""), root
    outputs = [o for c in nb["cells"] for o in c.get("outputs", [])]
    lines = sum(len(o.get("text", [])) for o in outputs if o["output_type"] == "stream")
    assert lines <= 150
