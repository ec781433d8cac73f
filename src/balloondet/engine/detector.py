"""A trained detector, loaded once: :class:`Detector` holds the model with its test pipeline, class
names, device and inference precision, as mmdet's ``DetInferencer`` holds a model and its pipeline.

``Detector.load(config, checkpoint, device=..., precision=...)`` is what the CLI adapters and the
notebooks' first cell call; the library steps (predict, featmap, cam, cam-eval) take the
``Detector`` (``Detector.scorer()``: a copy for many forward passes). Also here: a run's checkpoint
(``find_checkpoint``), a layer by name (``get_layer``) and the image inside a prepared input (``image_region``).
"""
from __future__ import annotations

import contextlib
import copy
import io
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from balloondet.core import defaults
from balloondet.core.errors import ModelError
from balloondet.core.images import read_image

if TYPE_CHECKING:
    import numpy as np
    import torch
    from mmdet.models.detectors import BaseDetector
    from mmdet.structures import DetDataSample


@dataclass(frozen=True)
class Detector:
    """An mmdet detector in eval mode with a checkpoint's weights, ready for inference.

    ``precision`` (``fp32`` or ``bf16``, resolved) is the one its predictions and feature maps
    use (``autocast``); Grad-CAM always runs in fp32. The pipelines are the config's test
    pipeline, built once: ``pipeline`` for image files, ``array_pipeline`` for RGB arrays.
    """

    model: BaseDetector
    pipeline: Callable[[dict], dict]
    array_pipeline: Callable[[dict], dict]
    classes: tuple[str, ...]
    device: str  # cpu | cuda
    precision: str = "fp32"  # fp32 | bf16
    channels_last: bool = False  # the model's weights, and the inputs prepare() makes, in channels-last layout
    # runs bbox_head(extract_feat(x)) where only the head's outputs are needed, no gradients (``scorer()``)
    network: Callable[[torch.Tensor], tuple] | None = None

    @classmethod
    def load(cls, config: str | Path, checkpoint: str | Path, device: str = defaults.DEVICE,
             precision: str = defaults.PRECISION, channels_last: bool = defaults.CHANNELS_LAST) -> Detector:
        """The detector of ``config`` with the weights of ``checkpoint`` (EMA weights, for our runs), on
        ``device`` (``auto``, ``cpu``, ``cuda``) in ``precision`` (``auto``, ``fp32``, ``bf16``);
        ``channels_last``: the convolutions in channels-last layout, on the CPU only (faster there: see the
        default; not measured on CUDA, which keeps the default layout).

        The checkpoint is read through the safe loader and must fit the model (every backbone, neck
        and head tensor), else a clear error.
        """
        checkpoint = Path(checkpoint)
        if not checkpoint.is_file():
            raise ModelError(f"checkpoint not found: {checkpoint} (train one with `balloondet train`)")
        from mmdet.apis import init_detector
        from mmdet.utils import register_all_modules

        from balloondet.engine.checkpoint import allow_mmengine_checkpoints, safe_load
        from balloondet.engine.checkpoint_fit import check_fits
        from balloondet.engine.compat import keep_head_fp32, separable_max_pools
        from balloondet.engine.config import build_config, pick_device, set_classes
        from balloondet.engine.precision import resolve_precision

        register_all_modules()
        allow_mmengine_checkpoints()
        cfg = build_config(config)
        state = safe_load(checkpoint)
        classes = (state.get("meta") or {}).get("dataset_meta", {}).get("classes") if isinstance(state, dict) else None
        if classes:  # the classes it was trained on (from its data set), whatever data the config points at now
            set_classes(cfg, tuple(classes))
        device = pick_device(device)
        precision = resolve_precision(precision, device)[0]
        # mmdet's prior generator calls torch.meshgrid without `indexing` (torch >= 1.10 warns, once per
        # process, about a future default); mmdet's own code, the same on every call: not ours to act on.
        warnings.filterwarnings("ignore", message=r"torch\.meshgrid: in an upcoming release", category=UserWarning)
        with contextlib.redirect_stdout(io.StringIO()):  # mmengine's "Loads checkpoint by ..." line
            model = init_detector(cfg, str(checkpoint), device=device)
        check_fits(model, state, checkpoint)  # every backbone/neck/head tensor, or a clear error
        separable_max_pools(model)
        if precision == "bf16":
            keep_head_fp32(model)
        return cls.from_model(model, precision, channels_last=channels_last and device == "cpu")

    @classmethod
    def from_model(cls, model: BaseDetector, precision: str = "fp32", channels_last: bool = False) -> Detector:
        """A ``Detector`` around a built model (its ``cfg`` and ``dataset_meta`` set, as ``init_detector`` does);
        ``channels_last`` converts the model's weights (in place) and the inputs ``prepare`` makes."""
        from mmcv.transforms import Compose
        from mmdet.utils import get_test_pipeline_cfg

        files = copy.deepcopy(get_test_pipeline_cfg(model.cfg))  # the config's own list: not to be changed
        arrays = copy.deepcopy(files)
        arrays[0].type = "mmdet.LoadImageFromNDArray"  # what inference_detector does for arrays
        device = next(model.parameters()).device.type
        if channels_last:
            import torch

            model.to(memory_format=torch.channels_last)
        return cls(model=model, pipeline=Compose(files), array_pipeline=Compose(arrays),
                   classes=tuple(model.dataset_meta["classes"]), device=device, precision=precision,
                   channels_last=channels_last)

    @property
    def dataset_meta(self) -> dict:
        """The classes and their palette, as the checkpoint (and mmdet's visualizer) hold them."""
        return self.model.dataset_meta

    def with_model(self, model: BaseDetector) -> Detector:
        """The same pipelines, classes, device and precision around another model (e.g. a re-initialised copy)."""
        return replace(self, model=model)

    def folded(self) -> Detector:
        """A copy for many forward passes without gradients (cam-eval's perturbed images): each batch norm
        folded into its convolution (``compat.fold_batch_norms``), in this detector's layout. The same
        predictions up to float rounding; this detector's model is not touched."""
        import torch

        from balloondet.engine.compat import fold_batch_norms

        model = fold_batch_norms(copy.deepcopy(self.model).eval())
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        return replace(self, model=model)

    def scorer(self, example: torch.Tensor) -> Detector:
        """The fastest copy for many forward passes without gradients (cam-eval's perturbed images): ``folded()``,
        and on the CPU in fp32 its network run by ONNX Runtime (``engine.network.OnnxNetwork``, exported from
        ``example``, a prepared input), 15 % faster again; where ONNX Runtime is missing, the folded copy."""
        import importlib.util

        folded = self.folded()
        if self.device != "cpu" or self.precision != "fp32" or importlib.util.find_spec("onnxruntime") is None:
            return folded
        from balloondet.engine.network import OnnxNetwork

        return replace(folded, network=OnnxNetwork(folded.model, example))

    def layout(self, inputs: torch.Tensor) -> torch.Tensor:
        """A batch in the memory layout this detector's convolutions use (channels-last or the default); as it
        comes where a ``network`` of its own runs them (ONNX Runtime reads NCHW: a channels-last copy would
        be copied back, two passes over each of cam-eval's batches for nothing)."""
        import torch

        return inputs.contiguous(memory_format=torch.channels_last) if self.channels_last and not self.network \
            else inputs

    def autocast(self) -> contextlib.AbstractContextManager:
        """Inside the block, inference runs in this detector's precision (bf16 autocast on the CPU, or fp32)."""
        from balloondet.engine.precision import cpu_autocast

        return cpu_autocast(enabled=self.precision == "bf16")

    def predict(self, image: str | Path) -> DetDataSample:
        """The data sample of one image file: its predictions (``pred_instances``, original pixels) and
        the input geometry (``img_shape``, ``batch_input_shape``, ``scale_factor``)."""
        from mmdet.apis import inference_detector

        with self.autocast():
            return inference_detector(self.model, str(image), test_pipeline=self.pipeline)

    def infer(self, bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(boxes x1 y1 x2 y2 in the photo's pixels, scores, labels), best first, of a BGR uint8 photo as the
        test pipeline loads it: what an exported model's ``infer`` answers (``deploy.backend``)."""
        from mmdet.apis import inference_detector

        with self.autocast():
            pred = inference_detector(self.model, bgr, test_pipeline=self.array_pipeline).pred_instances
        return pred.bboxes.float().numpy(), pred.scores.float().numpy(), pred.labels.numpy()

    def prepare(self, image: str | Path | np.ndarray) -> tuple[torch.Tensor, DetDataSample]:
        """The test pipeline and preprocessing of one image: (input batch of 1, data sample).

        ``image`` is a file or an RGB array as ``core.images.read_image`` returns it (the file is then
        not read again).
        """
        if isinstance(image, (str, Path)):
            read_image(image)  # a clear error for unreadable files before the pipeline fails obscurely
            data = self.pipeline(dict(img_path=str(image), img_id=0))
        else:
            import numpy as np

            data = self.array_pipeline(dict(img=np.ascontiguousarray(image[..., ::-1]), img_id=0))  # loader's BGR
        data = self.model.data_preprocessor({"inputs": [data["inputs"]], "data_samples": [data["data_samples"]]},
                                            False)
        return self.layout(data["inputs"]), data["data_samples"][0]


def image_region(sample: DetDataSample) -> tuple[int, int]:
    """The resized image's (h, w) inside the network input: ``ori_shape`` times ``scale_factor``.

    Not ``img_shape``: mmcv's ``Pad`` (the recipes' test pipelines pad to 640 x 640) sets that to the padded
    size, so a map cut to ``img_shape`` keeps the padding, and resized to the photo it is squeezed along the
    photo's short side.
    """
    ori_h, ori_w = sample.metainfo["ori_shape"][:2]
    scale_w, scale_h = sample.metainfo.get("scale_factor", (1.0, 1.0))[:2]
    pad_h, pad_w = (sample.metainfo.get("batch_input_shape") or sample.metainfo["img_shape"])[:2]
    return min(round(ori_h * scale_h), pad_h), min(round(ori_w * scale_w), pad_w)


def find_checkpoint(work_dir: str | Path) -> Path:
    """The final checkpoint of a run (``last_checkpoint``), else its best-on-val one.

    The final one, not the best: with 13 val images, the best of many val evaluations
    flatters the model, and the run's reported number is the final checkpoint's.
    """
    work_dir = Path(work_dir)
    last = work_dir / "last_checkpoint"
    if last.is_file():
        path = Path(last.read_text().strip())
        path = path if path.is_file() else work_dir / path.name  # the run may have moved
        if path.is_file():
            return path
    best = sorted(work_dir.glob("best_coco*.pth"), key=lambda p: p.stat().st_mtime)
    if best:
        return best[-1]
    raise ModelError(f"{work_dir}: no checkpoint (no last_checkpoint and no best_coco*.pth)")


def get_layer(model: torch.nn.Module, name: str) -> torch.nn.Module:
    """The submodule called ``name`` (``neck.out_convs.2`` or ``neck.out_convs[2]``)."""
    try:
        return model.get_submodule(name.replace("[", ".").replace("]", ""))
    except AttributeError:
        names = [n for n, _ in model.named_modules() if n.startswith(("backbone.stage", "neck.")) and n.count(".") <= 2]
        raise ModelError(f"unknown layer name {name!r}; for example: {', '.join(names[:12])} ...") from None
