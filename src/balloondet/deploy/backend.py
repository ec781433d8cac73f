"""One object per model file, whatever its format, answering as ``engine.detector.Detector`` does (Ultralytics'
``AutoBackend`` in spirit): ``load_backend`` gives the ``Detector`` for a checkpoint (``torch``) or an
``ExportedDetector`` for an ONNX file (``onnx``, ONNX Runtime) or an OpenVINO IR (``openvino``). The steps that
take either (`predict`, `test`) use ``predict(image)``, ``infer(bgr)``, ``classes`` and ``dataset_meta`` only, so
none of them grows an ``if backend`` of its own.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from balloondet.core import defaults
from balloondet.core.classes import palette
from balloondet.core.errors import ConfigError, DataError, ModelError
from balloondet.deploy.export import EXPORT_FORMATS, INPUT, SUFFIXES, letterbox, read_metadata

if TYPE_CHECKING:
    import numpy as np
    from mmdet.structures import DetDataSample

    from balloondet.engine.detector import Detector

BACKENDS = ("torch", *EXPORT_FORMATS)
DEFAULT_BACKEND = "torch"


def cpu_threads() -> int:
    """The threads a runtime gets: the cores this process may use (``engine.cores.usable_cores``, as torch gets)."""
    from balloondet.engine.cores import usable_cores

    return usable_cores()


@dataclass
class ExportedDetector:
    """An exported file with its runtime. ``infer(bgr)`` does what the export leaves outside (the letterbox
    resize before, the boxes back to the photo's pixels after); ``predict(path)`` returns mmdet's data sample,
    as ``Detector.predict`` does."""

    path: Path
    backend: str
    metadata: dict[str, Any]
    run: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.metadata["classes"])

    @property
    def dataset_meta(self) -> dict[str, Any]:
        return {"classes": self.classes, "palette": palette(len(self.classes))}

    @classmethod
    def load(cls, path: str | Path, backend: str | None = None, classes: Sequence[str] | None = None,
             threads: int | None = None) -> ExportedDetector:
        """The export at ``path`` in its runtime (``backend``: from the suffix when None). ``classes``: what the
        caller's data set or config holds; an export made for other classes is refused."""
        path = Path(path)
        backend = backend or {v: k for k, v in SUFFIXES.items()}.get(path.suffix)
        if backend not in EXPORT_FORMATS:
            readers = ", ".join(f"{b} ({SUFFIXES[b]})" for b in EXPORT_FORMATS)
            raise ConfigError(f"{path}: not an export file the backends read: {readers}")
        if path.suffix != SUFFIXES[backend]:
            raise ModelError(f"{path}: --backend {backend} reads a {SUFFIXES[backend]} file "
                             f"(export one with `balloondet export CONFIG CHECKPOINT --format {backend}`)")
        metadata = read_metadata(path)
        if classes is not None and tuple(classes) != tuple(metadata["classes"]):
            raise ModelError(f"{path} was exported for the classes {', '.join(metadata['classes'])}; this data set / "
                             f"config has {', '.join(classes)}. Export the checkpoint trained on it")
        threads = threads or cpu_threads()
        run = _onnx_runner(path, threads) if backend == "onnx" else _openvino_runner(path, threads)
        return cls(path=path, backend=backend, metadata=metadata, run=run)

    def infer(self, bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(boxes x1 y1 x2 y2 in ``bgr``'s pixels, scores, labels), best first, of a BGR uint8 (H, W, 3) photo."""
        import numpy as np

        resized, (fx, fy) = letterbox(bgr, tuple(self.metadata["scale"]))
        boxes, scores, labels = self.run(np.ascontiguousarray(resized.transpose(2, 0, 1)[None]))
        return boxes / np.array([fx, fy, fx, fy], dtype=np.float32), scores, labels.astype(np.int64)

    def predict(self, image: str | Path) -> DetDataSample:
        """The data sample of one image file (``pred_instances`` in its pixels), as ``Detector.predict``."""
        import mmcv
        import torch
        from mmdet.structures import DetDataSample
        from mmengine.structures import InstanceData

        if not Path(image).is_file():
            raise DataError(f"image not found: {image}")
        bgr = mmcv.imread(str(image))  # what the test pipeline loads (EXIF rotation applied)
        if bgr is None:
            raise DataError(f"unreadable image {image}")
        boxes, scores, labels = self.infer(bgr)
        sample = DetDataSample(metainfo={"img_path": str(image), "ori_shape": bgr.shape[:2]})
        sample.pred_instances = InstanceData(bboxes=torch.from_numpy(boxes), scores=torch.from_numpy(scores),
                                             labels=torch.from_numpy(labels))
        return sample


def _onnx_runner(path: Path, threads: int) -> Callable:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return tuple(session.run(None, {INPUT: image}))

    return run


def _openvino_runner(path: Path, threads: int) -> Callable:
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(path)), "CPU",
                                  {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()

    def run(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        result = request.infer({INPUT: image})
        return tuple(result[out] for out in compiled.outputs)

    return run


def load_backend(config: str | Path, model_file: str | Path, backend: str = DEFAULT_BACKEND,
                 device: str = defaults.DEVICE, precision: str = defaults.PRECISION,
                 classes: Sequence[str] | None = None) -> Detector | ExportedDetector:
    """The ``Detector`` of a checkpoint (``torch``), or the ``ExportedDetector`` of an export; an export must
    have been made for ``classes`` (default: the classes ``config`` holds for its data set)."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}: use {', '.join(BACKENDS)}")
    if backend == "torch":
        from balloondet.engine.detector import Detector

        exported = {v: k for k, v in SUFFIXES.items()}.get(Path(model_file).suffix)
        if exported:
            raise ConfigError(f"{model_file} is an export, not a checkpoint: add --backend {exported}")
        return Detector.load(config, model_file, device=device, precision=precision)
    if classes is None:
        from balloondet.engine.config import build_config

        cfg = build_config(config)
        classes = cfg.test_dataloader.dataset.get("metainfo", {}).get("classes")
    return ExportedDetector.load(model_file, backend, classes=classes)
