"""bfloat16 on the CPU: when it is chosen, what runs in bf16 and what stays fp32, and that it agrees with fp32."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from balloondet.core.errors import ConfigError
from balloondet.engine.precision import resolve_precision, set_precision

SMOKE = "rtmdet_tiny_smoke_synthetic"


def cpuinfo(tmp_path, flags: str):
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse2 avx2 {flags}\n\n")
    return path


def test_auto_is_bf16_only_where_the_cpu_computes_it_natively(tmp_path):
    assert resolve_precision("auto", "cpu", cpuinfo(tmp_path, "avx512f avx512_bf16"))[0] == "bf16"
    assert resolve_precision("auto", "cpu", cpuinfo(tmp_path, "amx_tile amx_bf16"))[0] == "bf16"
    precision, why = resolve_precision("auto", "cpu", cpuinfo(tmp_path, "avx512f"))
    assert precision == "fp32" and "no native bfloat16" in why
    assert resolve_precision("auto", "cpu", tmp_path / "missing")[0] == "fp32"
    assert resolve_precision("bf16", "cpu", cpuinfo(tmp_path, ""))[0] == "bf16"  # asked for: slow but allowed
    assert resolve_precision("auto", "cuda", cpuinfo(tmp_path, "avx512_bf16"))[0] == "fp32"
    with pytest.raises(ConfigError, match="for the CPU"):
        resolve_precision("bf16", "cuda")
    with pytest.raises(ConfigError, match="unknown precision 'fp16'"):
        resolve_precision("fp16", "cpu")


def test_a_bf16_config_autocasts_training_validation_and_testing():
    from balloondet.engine.config import build_config

    fp32 = build_config(SMOKE)
    cfg = build_config(SMOKE, precision="bf16")
    assert fp32.optim_wrapper.get("type", "OptimWrapper") == "OptimWrapper"
    assert cfg.optim_wrapper.type == "CPUAutocastOptimWrapper"
    assert cfg.val_cfg.fp16 and cfg.test_cfg.fp16  # mmengine's loops autocast (to bf16 on the CPU)
    assert [h["type"] for h in cfg.custom_hooks].count("FP32HeadHook") == 1
    set_precision(cfg, "bf16")  # idempotent
    assert [h["type"] for h in cfg.custom_hooks].count("FP32HeadHook") == 1


def smoke_batch(size: int = 192, n: int = 2) -> dict:
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData

    rng = np.random.default_rng(0)
    inputs, samples = [], []
    for _ in range(n):
        inputs.append(torch.from_numpy(rng.integers(0, 256, size=(3, size, size), dtype=np.uint8)))
        sample = DetDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size), pad_shape=(size, size),
                                             batch_input_shape=(size, size), scale_factor=(1.0, 1.0)))
        sample.gt_instances = InstanceData(bboxes=torch.tensor([[20.0, 30.0, 90.0, 120.0]]),
                                           labels=torch.zeros(1, dtype=torch.long))
        samples.append(sample)
    return {"inputs": inputs, "data_samples": samples}


def test_bf16_training_step_runs_convolutions_in_bf16_and_the_loss_in_fp32(initialised_model):
    """The wrapper's context autocasts the network, while the head's loss sees fp32 inputs with autocast off."""
    from mmengine.optim import OptimWrapper

    from balloondet.engine.precision import CPUAutocastOptimWrapper

    model = initialised_model.train()
    seen = {}
    conv_dtype = []
    head_cls = type(model.bbox_head)
    original = head_cls.loss_by_feat

    def spy(self, cls_scores, bbox_preds, *args, **kwargs):
        seen["dtypes"] = {t.dtype for t in (*cls_scores, *bbox_preds)}
        seen["autocast"] = torch.is_autocast_cpu_enabled()
        return original(self, cls_scores, bbox_preds, *args, **kwargs)

    hook = model.backbone.stem[0].conv.register_forward_hook(lambda _m, _i, out: conv_dtype.append(out.dtype))
    head_cls.loss_by_feat = spy
    try:
        for wrapper_cls, conv, head in ((OptimWrapper, torch.float32, {torch.float32}),
                                        (CPUAutocastOptimWrapper, torch.bfloat16, {torch.float32})):
            wrapper = wrapper_cls(optimizer=torch.optim.SGD(model.parameters(), lr=0.0))
            if "loss_by_feat" in vars(model.bbox_head):
                del model.bbox_head.loss_by_feat  # the instance's fp32 wrapper of the previous round
            with wrapper.optim_context(model):
                data = model.data_preprocessor(smoke_batch(), True)
                losses = model.loss(data["inputs"], data["data_samples"])
            loss, _ = model.parse_losses(losses)
            assert loss.dtype == torch.float32 and torch.isfinite(loss)
            wrapper.update_params(loss)
            assert conv_dtype[-1] == conv
            assert seen["dtypes"] == head and seen["autocast"] is False
    finally:
        head_cls.loss_by_feat = original
        hook.remove()
        vars(model.bbox_head).pop("loss_by_feat", None)
        vars(model.bbox_head).pop("predict_by_feat", None)


@pytest.mark.train
def test_bf16_predictions_agree_with_fp32(trained_smoke, synthetic_root):
    """Every box above the threshold in one precision is found by the other (IoU >= 0.9, score within
    0.05), on the trained smoke model.

    Found among the other precision's scored boxes before NMS: where overlapping candidates score
    alike, a change in the third decimal can make NMS keep a neighbour instead (seen on torch 2.14:
    a 0.35 box whose kept neighbour overlapped it at IoU 0.71). That choice is NMS's, not a bf16
    error; a box that bf16 moved, rescored or lost fails either way.
    """
    from mmdet.structures.bbox import bbox_overlaps

    from balloondet.core.defaults import SCORE_THR
    from balloondet.engine.detector import Detector

    images = sorted((synthetic_root / "val").glob("*.jpg"))[:6]
    kept, scored = {}, {}
    for precision in ("fp32", "bf16"):
        detector = Detector.load(SMOKE, trained_smoke["checkpoint"], device="cpu", precision=precision)
        assert detector.precision == precision
        kept[precision] = [detector.predict(p).pred_instances for p in images]
        detector.model.bbox_head.test_cfg.nms = None  # mmcv's batched_nms without a config: sorted, nothing suppressed
        scored[precision] = [detector.predict(p).pred_instances for p in images]
    n_boxes = 0
    for i in range(len(images)):
        assert kept["bf16"][i].bboxes.dtype == torch.float32  # decoded in fp32, not on bf16's coarse grid
        for mine, other in (("fp32", "bf16"), ("bf16", "fp32")):
            a, b = kept[mine][i], scored[other][i]
            keep = a.scores >= SCORE_THR
            if not keep.any():
                continue
            iou = bbox_overlaps(a.bboxes[keep], b.bboxes)
            close = (a.scores[keep, None] - b.scores[None, :]).abs() <= 0.05
            assert ((iou >= 0.9) & close).any(1).all(), (mine, a.scores[keep], iou.max(1))
            n_boxes += int(keep.sum()) * (mine == "fp32")
        top = scored["fp32"][i].bboxes[:50]
        assert (bbox_overlaps(top, top).triu(1) > 0.65).any()  # NMS (IoU 0.65) really was off: overlaps remain
    assert n_boxes >= len(images)  # the comparison covered real detections


