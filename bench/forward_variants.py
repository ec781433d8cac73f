"""ms per image of RTMDet-tiny's network (extract_feat + head, the CPU recipe, random weights) in fp32 on this
machine's threads: eager NCHW, channels-last, channels-last with the batch norms folded
(``compat.fold_batch_norms``), a frozen, optimised TorchScript graph, ONNX Runtime (dynamic sizes, as cam-eval
runs it, and exported for the one shape) and OpenVINO (f32, from the same ONNX), at 640 x 640 and 640 x 480,
4 alternated rounds; each variant's largest difference from eager NCHW first.

    .venv/bin/python bench/forward_variants.py [BATCH]      # default batch 4, cam-eval's
"""
from __future__ import annotations

import copy
import statistics
import sys
import time
import warnings

import torch

ROUNDS = 4


def eager(net: torch.nn.Module, layout: torch.memory_format):
    def run(x: torch.Tensor) -> tuple:
        with torch.inference_mode():
            return net(x.contiguous(memory_format=layout))
    return run


def frozen(net: torch.nn.Module, layout: torch.memory_format, shape: tuple):
    with torch.no_grad():
        graph = torch.jit.trace(net, torch.randn(*shape).contiguous(memory_format=layout), strict=False)
        graph = torch.jit.optimize_for_inference(torch.jit.freeze(graph.eval()))

    def run(x: torch.Tensor) -> tuple:
        with torch.no_grad():
            return graph(x.contiguous(memory_format=layout))
    return run


def onnx_runtime(net: torch.nn.Module, shape: tuple):
    """The same network in ONNX Runtime, as cam-eval runs it (``engine.network.OnnxNetwork``: dynamic sizes)."""
    from balloondet.engine.network import OnnxNetwork

    network = OnnxNetwork(net.model, torch.randn(*shape))

    def run(x: torch.Tensor) -> tuple:
        cls_scores, bbox_preds = network(x)
        return (*cls_scores, *bbox_preds)
    return run


def onnx_bytes(net: torch.nn.Module, shape: tuple, dynamic: bool) -> bytes:
    """The network as ONNX, its batch, height and width dynamic or fixed to ``shape``."""
    import io

    from balloondet.core import defaults

    axes = {0: "batch", 2: "height", 3: "width"}
    names = [f"out{i}" for i in range(len(net(torch.randn(*shape))))]
    buffer = io.BytesIO()
    torch.onnx.export(net, (torch.randn(*shape),), buffer, dynamo=False, opset_version=defaults.ONNX_OPSET,
                      input_names=["images"], output_names=names,
                      dynamic_axes={"images": axes, **{n: axes for n in names}} if dynamic else None)
    return buffer.getvalue()


def onnx_runtime_static(net: torch.nn.Module, shape: tuple):
    """ONNX Runtime on an export for this one shape (static sizes let it plan every buffer ahead)."""
    import onnxruntime as ort

    from balloondet.engine.cores import usable_cores

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = usable_cores(), 1
    with torch.no_grad():
        session = ort.InferenceSession(onnx_bytes(net, shape, dynamic=False), options,
                                       providers=["CPUExecutionProvider"])

    def run(x: torch.Tensor) -> tuple:
        return tuple(torch.from_numpy(o) for o in session.run(None, {"images": x.contiguous().numpy()}))
    return run


def openvino(net: torch.nn.Module, shape: tuple):
    """OpenVINO's CPU plugin in f32 on the dynamic-size ONNX (what ``deploy`` runs for ``--backend openvino``)."""
    import openvino as ov

    from balloondet.engine.cores import usable_cores

    core = ov.Core()
    with torch.no_grad():
        model = core.read_model(onnx_bytes(net, shape, dynamic=True), b"")
    compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": usable_cores(),
                                                 "INFERENCE_PRECISION_HINT": "f32"})

    def run(x: torch.Tensor) -> tuple:
        outputs = compiled(x.contiguous().numpy())
        return tuple(torch.from_numpy(outputs[o]) for o in compiled.outputs)
    return run


def main(batch: int) -> None:
    from mmdet.apis import init_detector
    from mmdet.utils import register_all_modules

    from balloondet.engine.compat import fold_batch_norms
    from balloondet.engine.config import build_config
    from balloondet.engine.network import HeadOutputs as Network  # backbone, neck and head, no post-processing

    warnings.filterwarnings("ignore")
    register_all_modules()
    torch.manual_seed(0)
    model = init_detector(build_config("rtmdet_tiny_cpu-scratch_balloon"), None, device="cpu").eval()
    nchw = Network(copy.deepcopy(model)).eval()
    cl = Network(copy.deepcopy(model)).eval().to(memory_format=torch.channels_last)
    folded = Network(fold_batch_norms(copy.deepcopy(model).eval())).eval().to(memory_format=torch.channels_last)
    print(f"{torch.get_num_threads()} torch threads, batch {batch}, fp32")
    for h, w in [(640, 640), (480, 640)]:
        shape = (batch, 3, h, w)
        variants = {"eager nchw": eager(nchw, torch.contiguous_format), "eager cl": eager(cl, torch.channels_last),
                    "eager cl+fold": eager(folded, torch.channels_last),
                    "jit frozen nchw": frozen(copy.deepcopy(nchw), torch.contiguous_format, shape),
                    "jit frozen cl": frozen(copy.deepcopy(cl), torch.channels_last, shape),
                    "onnxruntime": onnx_runtime(copy.deepcopy(nchw), shape),
                    "onnxruntime static": onnx_runtime_static(copy.deepcopy(nchw), shape),
                    "openvino": openvino(copy.deepcopy(nchw), shape)}
        x = torch.randn(*shape)
        want = variants["eager nchw"](x)
        for name, run in variants.items():
            got = run(x)
            run(x)  # warm-up
            diff = max(float((a - b).abs().max()) for a, b in zip(want, got, strict=True))
            print(f"{h}x{w} {name}: largest difference from eager nchw {diff:.2e}", flush=True)
        times: dict[str, list[float]] = {name: [] for name in variants}
        for r in range(ROUNDS):
            for name, run in (variants.items() if r % 2 == 0 else reversed(list(variants.items()))):
                start = time.perf_counter()
                run(x)
                times[name].append((time.perf_counter() - start) * 1000 / batch)
        for name, ms in times.items():
            print(f"{h}x{w} {name}: {statistics.median(ms):.1f} ms/image ({min(ms):.1f}-{max(ms):.1f})", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 4)
