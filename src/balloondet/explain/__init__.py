"""Explaining the detector: what its layers see and which pixels its boxes depend on.

- ``featmap``: the `featmap` step: backbone and neck feature maps over the image.
- ``methods``: the CAM methods by name, and how one runs.
- ``spatial_cam``: mmyolo's spatial Grad-CAM and Grad-CAM++.
- ``wrapper``: the detector as grad-cam's CAM classes call it.
- ``targets``: what a map explains (the boxes' prior scores, or their matched predictions' scores).
- ``selection``: which boxes to explain: predicted, missed or false-positive, against the ground truth.
- ``maps``: a CAM of one image (``CamResult``) and its measures (focus, boxes' masks).
- ``drise``: D-RISE, the black-box method: random masks of the image, weighted by how the detections match.
- ``localisation``: the pointing game and the energy-based pointing game of a map.
- ``plots``: the CAM figures.
- ``cam``: the `cam` step.
- ``cam_eval``: the `cam-eval` step: is a CAM faithful to the detector?
- ``cam_eval_report``: cam-eval's results, its table, files and figure.
"""
