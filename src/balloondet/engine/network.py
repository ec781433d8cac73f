"""A detector's network without its post-processing, for many forward passes without gradients (cam-eval's
perturbed copies of an image).

- ``HeadOutputs``: backbone, neck and head as one module, a batch of preprocessed images in, the head's raw
  outputs (each level's class scores, then each level's box offsets) out.
- ``OnnxNetwork``: the same exported once to ONNX and run by ONNX Runtime: on this project's 2-core AVX2 CPU
  in fp32, 105 against 124 ms per 640 x 640 image (77 against 90 at 640 x 480) for PyTorch's fastest
  (channels-last, batch norms folded), the outputs equal to 3e-6 (``bench/forward_variants.py``).
"""
from __future__ import annotations

import io
import warnings
from typing import TYPE_CHECKING

import torch

from balloondet.core import defaults

if TYPE_CHECKING:
    from mmdet.models.detectors import BaseDetector

INPUT = "images"


class HeadOutputs(torch.nn.Module):
    """``bbox_head(extract_feat(x))`` of a single-stage detector, flattened: class scores per level, then box
    offsets per level."""

    def __init__(self, model: BaseDetector) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        cls_scores, bbox_preds = self.model.bbox_head(self.model.extract_feat(inputs))
        return (*cls_scores, *bbox_preds)


def head_outputs_onnx(model: BaseDetector, example: torch.Tensor, dynamic: bool = True) -> tuple[bytes, int]:
    """``HeadOutputs`` of ``model`` exported from ``example`` (any preprocessed batch) as ONNX bytes, and its number
    of pyramid levels; the batch, height and width dynamic, or (``dynamic=False``) fixed to ``example``'s."""
    network = HeadOutputs(model).eval()
    with torch.no_grad():
        levels = len(network(example)) // 2
    names = [f"cls_scores_{i}" for i in range(levels)] + [f"bbox_preds_{i}" for i in range(levels)]
    axes = {0: "batch", 2: "height", 3: "width"}
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation note and the tracer's
        torch.onnx.export(network, (example.float().contiguous(),), buffer, dynamo=False,
                          opset_version=defaults.ONNX_OPSET, input_names=[INPUT], output_names=names,
                          dynamic_axes={INPUT: axes, **{name: axes for name in names}} if dynamic else None)
    return buffer.getvalue(), levels


class OnnxNetwork:
    """``HeadOutputs`` of ``model`` in ONNX Runtime, on ``threads`` (default: the cores this process may use).

    Exported once from ``example`` (``head_outputs_onnx``) with the batch, height and width dynamic, so one
    session serves every image size (``dynamic=False``: for ``example``'s shape only, no faster here). Called
    with a batch (fp32, any memory layout), it returns what the model's head returns: (class scores per level,
    box offsets per level), as CPU tensors, without gradients.
    """

    def __init__(self, model: BaseDetector, example: torch.Tensor, threads: int | None = None,
                 dynamic: bool = True) -> None:
        import onnxruntime as ort

        from balloondet.engine.cores import usable_cores

        onnx, self.levels = head_outputs_onnx(model, example, dynamic)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or usable_cores()
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(onnx, options, providers=["CPUExecutionProvider"])

    def __call__(self, inputs: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        array = inputs.detach().float().cpu().contiguous().numpy()
        outputs = [torch.from_numpy(out) for out in self.session.run(None, {INPUT: array})]
        return outputs[:self.levels], outputs[self.levels:]
