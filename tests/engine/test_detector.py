"""Detector: loaded once from a config and a checkpoint, refusing checkpoints that are unsafe or do not fit."""
from __future__ import annotations

import pytest
import torch
from conftest import save_malicious

from balloondet.core.errors import CheckpointMismatchError, ModelError, UnsafeCheckpointError
from balloondet.engine.detector import Detector

SMOKE = "rtmdet_tiny_smoke_synthetic"


def test_load_refuses_malicious_empty_and_mismatched(tmp_path, coco_head_state_dict):

    marker = tmp_path / "ran"
    with pytest.raises(UnsafeCheckpointError, match="evil.pth.*posix.system"):
        Detector.load(SMOKE, save_malicious(tmp_path / "evil.pth", marker), device="cpu")
    assert not marker.exists()
    torch.save({"state_dict": {}}, tmp_path / "empty.pth")
    with pytest.raises(CheckpointMismatchError, match=r"empty.pth: (\d+) of \1 model tensors missing"):
        Detector.load(SMOKE, tmp_path / "empty.pth", device="cpu")
    torch.save({"state_dict": coco_head_state_dict}, tmp_path / "coco80.pth")
    with pytest.raises(CheckpointMismatchError, match=r"0 of \d+ model tensors missing, 6 shape mismatches.*rtm_cls"):
        Detector.load(SMOKE, tmp_path / "coco80.pth", device="cpu")


def test_load_accepts_a_fitting_checkpoint(fitting_checkpoint, smoke_model):
    detector = Detector.load(SMOKE, fitting_checkpoint, device="cpu", precision="fp32")
    key = "backbone.stem.0.conv.weight"
    assert torch.equal(detector.model.state_dict()[key], smoke_model.state_dict()[key])
    assert (detector.classes, detector.device, detector.precision) == (("balloon",), "cpu", "fp32")
    assert not detector.model.training


def test_prepare_files_and_arrays_alike_without_copying_the_pipeline(fitting_checkpoint, tmp_path):
    """A file and the same image as an RGB array give the same input; the pipelines are built once, at load."""
    import numpy as np
    from PIL import Image

    from balloondet.core.images import read_image

    detector = Detector.load(SMOKE, fitting_checkpoint, device="cpu", precision="fp32")
    rng = np.random.default_rng(0)
    path = tmp_path / "x.png"
    Image.fromarray(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)).save(path)
    pipelines = (detector.pipeline, detector.array_pipeline)
    from_file, sample = detector.prepare(path)
    from_array, _ = detector.prepare(read_image(path))
    assert torch.equal(from_file, from_array) and from_file.shape[0] == 1
    assert sample.metainfo["ori_shape"] == (120, 160)
    assert (detector.pipeline, detector.array_pipeline) == pipelines  # the same objects after use
    assert detector.predict(path).pred_instances.bboxes.shape[1] == 4


def test_missing_checkpoint_is_said_before_anything_loads(tmp_path):
    with pytest.raises(ModelError, match="checkpoint not found.*balloondet train"):
        Detector.load(SMOKE, tmp_path / "missing.pth")


@pytest.mark.train
def test_channels_last_predicts_what_the_default_layout_predicts(trained_smoke, synthetic_root):
    """The same boxes and scores up to float rounding (other convolution kernels), the inputs in channels-last."""
    from balloondet.explain.wrapper import predict_boxes

    plain = Detector.load(SMOKE, trained_smoke["checkpoint"], device="cpu", precision="fp32")
    fast = Detector.load(SMOKE, trained_smoke["checkpoint"], device="cpu", precision="fp32", channels_last=True)
    assert fast.model.backbone.stem[0].conv.weight.is_contiguous(memory_format=torch.channels_last)
    for image in sorted((synthetic_root / "val").glob("*.jpg"))[:3]:
        inputs, sample = fast.prepare(image)
        assert inputs.is_contiguous(memory_format=torch.channels_last)
        a, b = predict_boxes(plain.model, *plain.prepare(image)), predict_boxes(fast.model, inputs, sample)
        kept = a.scores > 0.05
        assert len(a.scores) == len(b.scores) and kept.any()
        assert torch.allclose(a.bboxes[kept], b.bboxes[kept], atol=1e-2)
        assert torch.allclose(a.scores[kept], b.scores[kept], atol=1e-4)


@pytest.mark.train
def test_image_region_is_the_photo_not_the_padding(smoke_detector):
    """A landscape photo resized into the recipe's padded square: mmcv's Pad makes img_shape the square, the image
    region is the photo's own shape; a CAM map cut to it has the photo's aspect (not squeezed when drawn on it)."""
    import numpy as np

    from balloondet.engine.detector import image_region
    from balloondet.explain.cam import explain

    photo = np.full((150, 300, 3), 120, np.uint8)  # 2:1, drawn at 192 px: 96 x 192 inside a 192 x 192 input
    photo[40:100, 30:90] = (220, 30, 30)
    inputs, sample = smoke_detector.prepare(photo)
    assert tuple(sample.metainfo["img_shape"]) == tuple(inputs.shape[-2:]) == (192, 192)
    assert image_region(sample) == (96, 192)
    box = torch.tensor([[30, 40, 90, 100]], dtype=torch.float32) * 0.64  # the red square, in input pixels
    heatmap = explain(smoke_detector.model, inputs, sample, box, torch.tensor([0]))
    assert heatmap.shape == (96, 192)
