"""Where one model-only forward pass of RTMDet-tiny spends its time: by memory format, by op, by oneDNN kernel.

Made for the one figure of ``make bench`` that got worse on the torch 2.14.1 stack: 640 px bf16
inference (model only 86.6 -> 104.7 ms against torch 2.1.2, same machine, same day). Run it once
per stack on the same idle machine and compare the three sections:

1. **latency by memory format**: ``model.predict`` on a ready batch of 1 (as ``make bench``'s
   "model only"), with the model and input in PyTorch's default NCHW layout and in channels_last,
   then split into the network and the post-processing (where the stacks' nms differs);
2. **the top ops by self CPU time** (``torch.profiler``, grouped by input shape): which convolution
   shapes the time went to;
3. **oneDNN's kernels** (a child process with ``ONEDNN_VERBOSE=1``): total milliseconds per forward
   by primitive kind and implementation, then the costliest primitives one by one. An implementation
   named ``ref`` is oneDNN's reference C++ loop, its slow fallback when no optimised kernel takes a
   shape (the signature of pytorch/pytorch#193951's 2.14 regression, for f16 matmuls there);
   ``gemm:``/``brg``/``jit:`` kernels are the optimised ones.

Usage (from the repository root):

    .venv/bin/python bench/profile_ops.py                        # 640 px, the precisions make bench picks
    .venv/bin/python bench/profile_ops.py --precisions bf16 --size 640 --iters 20
    .venv/bin/python bench/profile_ops.py --train --size 320 --iters 2   # the training step instead (fp32)

``--train`` profiles the training step instead of the forward pass: ``model.train_step``'s work (data
preprocessor, loss, backward, AdamW) on a random batch of 8, as ``make bench`` times it, in fp32; section 2
only, by op and then by op and input shape (a ``convolution_backward`` row's shapes are the output's
gradient, the input and the weight: its FLOPs are about twice the forward's).

Untrained weights, as ``make bench``. Only prints; nothing is written.
"""
from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark import (  # noqa: E402
    BATCH,
    build_inference_model,
    build_train_model,
    default_precisions,
    detector_for,
    model_only_forward,
    ms_per_image,
    timed,
    train_step,
    write_test_image,
)

MEMORY_FORMATS = ("contiguous", "channels_last")
TIMED_MARK = "=== profile_ops: timed iterations ==="


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=640, help="square input size (default 640)")
    p.add_argument("--precisions", nargs="+", choices=("fp32", "bf16"), default=None,
                   help="default: as make bench (fp32, and bf16 on a CPU with native bfloat16)")
    p.add_argument("--warmup", type=int, default=2, help="untimed iterations before each measurement")
    p.add_argument("--iters", type=int, default=10, help="timed iterations per measurement")
    p.add_argument("--top", type=int, default=12, help="rows of the op and kernel tables")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--train", action="store_true", help="profile the training step (batch 8, fp32) instead")
    p.add_argument("--onednn-child", nargs=2, metavar=("PRECISION", "FORMAT"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


def prepared(size: int, precision: str, memory_format: str, image: Path):
    """The benchmark's ``Detector`` for ``precision`` and ``image``'s ready batch of 1, in ``memory_format``."""
    detector = detector_for(build_inference_model(size, "cpu"), precision)
    inputs, sample = detector.prepare(image)
    if memory_format == "channels_last":
        detector.model.to(memory_format=torch.channels_last)
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    return detector, inputs, sample


def forward_pass(size: int, precision: str, memory_format: str, image: Path):
    """A no-argument function: ``model.predict`` once on ``image``'s ready batch of 1 (make bench's model only)."""
    return model_only_forward(*prepared(size, precision, memory_format, image))


def split_predict(size: int, precision: str, image: Path, warmup: int, iters: int) -> tuple[float, float, int]:
    """``model.predict`` in two parts: median ms of the network (backbone, neck, head) and of the
    post-processing (``predict_by_feat``: decoding, score filter, NMS), and how many boxes reached NMS.

    The post-processing is where the stacks' nms differs (mmcv's compiled op or torchvision's).
    """
    from unittest import mock

    import mmdet.models.dense_heads.base_dense_head as dense_head

    detector, inputs, sample = prepared(size, precision, "contiguous", image)
    model = detector.model

    def network():
        with torch.no_grad(), detector.autocast():
            return model.bbox_head(model.extract_feat(inputs))

    outs = network()

    def post():
        with torch.no_grad(), detector.autocast():
            model.bbox_head.predict_by_feat(*outs, batch_img_metas=[sample.metainfo], rescale=True)

    with mock.patch.object(dense_head, "batched_nms", wraps=dense_head.batched_nms) as nms:  # counts its boxes
        post_ms = ms_per_image(timed(post, warmup, iters, "cpu"))
    network_ms = ms_per_image(timed(network, warmup, iters, "cpu"))
    return network_ms, post_ms, max((len(call.args[0]) for call in nms.call_args_list), default=0)


def profile_train_step(args) -> None:
    """Section 2 for the training step: the top ops, then the top (op, input shapes)."""
    step = train_step(build_train_model("cpu"), args.size)
    times = timed(step, args.warmup, args.iters, "cpu")
    print(f"\n[fp32] training step, batch {BATCH} at {args.size} px: median {ms_per_image(times):.0f} ms")
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(args.iters):
            step()
    print(f"\n[fp32] 2. top ops by self CPU time ({args.iters} training steps)")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top, max_name_column_width=40))
    print(f"[fp32] 2. top ops and input shapes by self CPU time ({args.iters} training steps)")
    print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=args.top,
                                                            max_name_column_width=32, max_shapes_column_width=80))


# ---------------------------------------------------------------- oneDNN's verbose log

def parse_onednn_verbose(lines, iters: int = 1) -> dict[tuple[str, str, str], float]:
    """{(kind, implementation, problem): ms per iteration} from ``ONEDNN_VERBOSE=1`` output.

    Reads the ``exec`` lines of oneDNN 3.x in both layouts: ``onednn_verbose,v1,primitive,exec,cpu,
    KIND,IMPL,...,PROBLEM,MS`` (oneDNN >= 3.4) and ``onednn_verbose,exec,cpu,KIND,IMPL,...,PROBLEM,MS``
    (older, as in torch 2.1). Only lines after ``TIMED_MARK`` count when the mark is present.
    """
    lines = [line.strip() for line in lines]
    if TIMED_MARK in lines:
        lines = lines[lines.index(TIMED_MARK) + 1:]
    totals: dict[tuple[str, str, str], float] = collections.defaultdict(float)
    for line in lines:
        fields = line.split(",")
        if not fields or not fields[0].startswith(("onednn_verbose", "dnnl_verbose")) or "exec" not in fields:
            continue
        at = fields.index("exec")
        if len(fields) < at + 6:
            continue
        kind, impl = fields[at + 2], fields[at + 3]
        try:
            ms = float(fields[-1])
        except ValueError:
            continue
        totals[(kind, impl, fields[-2])] += ms / iters
    return dict(totals)


def onednn_kernels(precision: str, memory_format: str, args) -> dict[tuple[str, str, str], float]:
    """Runs this script as a child with ``ONEDNN_VERBOSE=1`` and parses what oneDNN printed."""
    command = [sys.executable, __file__, "--size", str(args.size), "--warmup", str(args.warmup),
               "--iters", str(args.iters), "--onednn-child", precision, memory_format]
    if args.threads:
        command += ["--threads", str(args.threads)]
    env = {**os.environ, "ONEDNN_VERBOSE": "1", "DNNL_VERBOSE": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"profile_ops: the ONEDNN_VERBOSE child failed:\n{done.stderr[-2000:]}")
    return parse_onednn_verbose(done.stdout.splitlines(), args.iters)


def run_onednn_child(args) -> None:
    precision, memory_format = args.onednn_child
    with tempfile.TemporaryDirectory() as tmp:
        forward = forward_pass(args.size, precision, memory_format, write_test_image(Path(tmp) / "balloons.jpg"))
        for _ in range(args.warmup):
            forward()
        sys.stdout.flush()
        print(TIMED_MARK, flush=True)
        for _ in range(args.iters):
            forward()
        sys.stdout.flush()


def kernel_table(kernels: dict[tuple[str, str, str], float], top: int) -> list[str]:
    by_impl: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
    for (kind, impl, _), ms in kernels.items():
        by_impl[(kind, impl)].append(ms)
    total = sum(kernels.values()) or 1.0
    lines = [f"  {'kind':<20} {'implementation':<36} {'ms/forward':>10} {'share':>6}  primitives"]
    for (kind, impl), times in sorted(by_impl.items(), key=lambda kv: -sum(kv[1]))[:top]:
        flag = "  <- reference kernel" if impl.startswith("ref") else ""
        lines.append(f"  {kind:<20} {impl:<36} {sum(times):>10.2f} {sum(times) / total:>6.1%}  {len(times)}{flag}")
    lines.append(f"  {'all oneDNN primitives':<57} {total:>10.2f}")
    lines.append("  costliest primitives:")
    for (kind, impl, problem), ms in sorted(kernels.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"    {ms:8.2f} ms  {kind} {impl}  {problem}")
    return lines


# ---------------------------------------------------------------- main

def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from mmdet.utils import register_all_modules

    register_all_modules()
    if args.onednn_child:
        run_onednn_child(args)
        return 0
    if args.train:
        print(f"RTMDet-tiny's training step on the CPU: torch {torch.__version__}, {torch.get_num_threads()} threads, "
              f"{args.iters} timed steps after {args.warmup}")
        profile_train_step(args)
        return 0
    precisions = args.precisions or default_precisions("cpu")
    print(f"RTMDet-tiny model-only forward at {args.size} px on the CPU: torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, oneDNN {torch.backends.mkldnn.is_available() and 'on' or 'off'}, "
          f"{args.iters} timed iterations after {args.warmup}")
    with tempfile.TemporaryDirectory() as tmp:
        image = write_test_image(Path(tmp) / "balloons.jpg")
        for precision in precisions:
            print(f"\n[{precision}] 1. latency by memory format (median ms per forward)")
            for memory_format in MEMORY_FORMATS:
                times = timed(forward_pass(args.size, precision, memory_format, image), args.warmup, args.iters, "cpu")
                print(f"  {memory_format:<14} {ms_per_image(times):8.1f} ms")
            network_ms, post_ms, nms_boxes = split_predict(args.size, precision, image, args.warmup, args.iters)
            print(f"  contiguous, in two parts: network {network_ms:.1f} ms, post-processing {post_ms:.1f} ms "
                  f"(NMS saw {nms_boxes} boxes)")
            print(f"\n[{precision}] 2. top ops by self CPU time (contiguous, {args.iters} forwards)")
            forward = forward_pass(args.size, precision, "contiguous", image)
            for _ in range(args.warmup):
                forward()
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True) as prof:
                for _ in range(args.iters):
                    forward()
            print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total",
                                                                    row_limit=args.top, max_name_column_width=40))
            print(f"[{precision}] 3. oneDNN kernels (contiguous, ONEDNN_VERBOSE=1, ms per forward)")
            kernels = onednn_kernels(precision, "contiguous", args)
            print("\n".join(kernel_table(kernels, args.top)) if kernels else
                  "  oneDNN printed nothing: this torch does not run these ops through oneDNN")
    return 0


if __name__ == "__main__":
    sys.exit(main())
