"""Deployment: the trained detector outside PyTorch (the `export` and `benchmark` verbs, `--backend` of `predict`
and `test`).

- ``export``: the detector after the resize as one ONNX file or an OpenVINO IR, with its metadata.
- ``backend``: ``ExportedDetector`` (an export that answers as the ``Detector`` does) and ``load_backend``.
- ``evaluate``: `test` on an exported file: the val detections and COCO's metrics, as for a checkpoint.
- ``benchmark``: every format side by side: file size, val mAP, milliseconds per image.
"""
