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


def onnx_runtime(net: torch.nn.Module, shape: tuple, dynamic: bool = True):
    """The same network in ONNX Runtime, as cam-eval runs it (``engine.network.OnnxNetwork``: dynamic sizes), or
    exported for this one shape (``dynamic=False``)."""
    from balloondet.engine.network import OnnxNetwork

    network = OnnxNetwork(net.model, torch.randn(*shape), dynamic=dynamic)

    def run(x: torch.Tensor) -> tuple:
        cls_scores, bbox_preds = network(x)
        return (*cls_scores, *bbox_preds)
    return run


def openvino(net: torch.nn.Module, shape: tuple):
    """OpenVINO's CPU plugin in f32 on the dynamic-size ONNX (what ``deploy`` runs for ``--backend openvino``)."""
    import openvino as ov

    from balloondet.engine.cores import usable_cores
    from balloondet.engine.network import head_outputs_onnx

    core = ov.Core()
    compiled = core.compile_model(core.read_model(head_outputs_onnx(net.model, torch.randn(*shape))[0], b""), "CPU",
                                  {"INFERENCE_NUM_THREADS": usable_cores(), "INFERENCE_PRECISION_HINT": "f32"})

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
                    "onnxruntime static": onnx_runtime(copy.deepcopy(nchw), shape, dynamic=False),
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
