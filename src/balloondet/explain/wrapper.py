"""The detector as grad-cam's CAM classes call it: a ``torch.nn.Module`` from a preprocessed batch to
the detector's own outputs (final predictions, or every prior's class scores)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import torch

from balloondet.engine.compat import predict_single_image

if TYPE_CHECKING:
    from mmdet.models.detectors import BaseDetector
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData


class DetectorWrapper(torch.nn.Module):
    """Preprocessed images in, the detector's own outputs out, one entry per image.

    ``predict``: the final predictions (``InstanceData``: bboxes in input pixels, scores,
    labels), after NMS, with gradients. ``dense``: per pyramid level, the priors and the
    class scores of every prior, before any filtering. ``with_nms=False``: the predictions before NMS
    (the test config's score floor and top-k per level only). ``network``: a callable from the batch to the
    head's (class scores, box offsets), such as ``engine.network.OnnxNetwork``; the detector's own by default.
    """

    def __init__(self, detector: BaseDetector, data_sample: DetDataSample, mode: str = "predict",
                 test_cfg: dict | None = None, with_nms: bool = True, network: Callable | None = None) -> None:
        super().__init__()
        self.detector = detector
        self.data_sample = data_sample  # geometry of the input (img_shape, pad_shape, ...)
        self.mode = mode
        self.with_nms = with_nms
        self.test_cfg = test_cfg or detector.bbox_head.test_cfg  # post-processing (NMS) settings
        self.network = network  # another way to the head's outputs (``Detector.network``), else the detector's

    def forward(self, inputs: torch.Tensor) -> list:
        head = self.detector.bbox_head
        if self.network is not None:
            cls_scores, bbox_preds = self.network(inputs)
        else:
            cls_scores, bbox_preds = head(self.detector.extract_feat(inputs))
        # under bf16 autocast (cam_eval's scoring passes) the boxes are decoded in fp32; a no-op otherwise
        cls_scores, bbox_preds = [c.float() for c in cls_scores], [b.float() for b in bbox_preds]
        priors = head.prior_generator.grid_priors([c.shape[-2:] for c in cls_scores], dtype=cls_scores[0].dtype,
                                                  device=cls_scores[0].device)
        if self.mode == "dense":  # every prior's class scores, per level: (priors (P, 2+), scores (P, classes))
            return [[(p, c[i].permute(1, 2, 0).reshape(-1, c.shape[1]).sigmoid())
                     for p, c in zip(priors, cls_scores, strict=True)] for i in range(len(inputs))]
        # mmdet's predict_by_feat detaches the head outputs; compat's per-image loop keeps the gradients
        return [predict_single_image(head, cls_scores, bbox_preds, i, priors, self.data_sample.metainfo,
                                     self.test_cfg, with_nms=self.with_nms) for i in range(len(inputs))]


def predict_boxes(model: BaseDetector, inputs: torch.Tensor, sample: DetDataSample) -> InstanceData:
    """Every prediction the head keeps (its test_cfg, after NMS), in input pixels, sorted by score."""
    with torch.no_grad():
        return DetectorWrapper(model, sample)(inputs)[0]
