"""The engine: mmengine, mmdet and torch, as the steps need them.

- ``compat``: every reach into an upstream internal (mmengine, mmdet, torch), in one place.
- ``config``: find a config, build a run's config with this package's overrides, pick the device
  and the recipe, read the config a run saved.
- ``unpickler``: the allow-list of what a checkpoint may hold, and the restricted unpickler.
- ``checkpoint``: ``safe_load``, and mmengine's checkpoint loading routed through it.
- ``download``: checkpoint downloads, verified against the hash prefix in their names.
- ``checkpoint_fit``: does a checkpoint fit a model (``check_fits``, ``check_pretrained``, ``CheckpointFitHook``).
- ``cores``: the cores this process may use, and the DataLoader workers and torch threads for them.
- ``precision``: bf16 on the CPU (the convolutions in bf16, the detection head in fp32).
- ``hooks``: mmengine hooks a config can name (a time budget, a progress bar, the val loss).
- ``transforms``: data transforms a config can name (``CachedCopyPaste``).
- ``image_cache``: decode each image once per run (``CachedLoadImageFromFile``, ``ImageCacheHook``).
- ``detector``: ``Detector``, a trained model loaded once with its test pipeline; a run's checkpoint.
- ``network``: the network without its post-processing, for many forward passes (``OnnxNetwork``: in ONNX Runtime).
- ``tta``: a config that tests with mmdet's test-time augmentation (RTMDet's scales and flips).
"""
