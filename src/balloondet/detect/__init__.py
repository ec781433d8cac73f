"""Detection: train a detector, test it, predict with it, and the figures of its results.

- ``cocostats``: COCO detections against ground truth (matching, precision-recall, a bootstrap interval).
- ``train``: the `train` step (mmengine's Runner; runs reused, resumed or retrained).
- ``test``: the `test` step: COCO metrics of a checkpoint on the val split, and its detections.
- ``predict``: the `predict` step: detections drawn and written as JSON.
- ``report``: the figures of the test result (ground truth against predictions, precision-recall, box sizes).
- ``curves``: the training curves, from a run's logs.
- ``per_class``: the `per-class` step: AP per class and a confusion matrix with a background row and column.
- ``error_analysis``: the `errors` and `worst` steps: TIDE's error types and their cost in AP, every image scored.
"""
