"""Two stacks on one machine: model-only latency alternated between two interpreters, with a paired sign test.

One ``make bench`` run per stack cannot tell two stacks apart on a shared 2-core machine: there the
same stack's 640 px fp32 "model only" moved from 181 to 249 ms between two runs ten minutes apart
(2026-12-01), more than any difference between stacks. This script alternates short measurements,
A B A B ..., each in a fresh process, and pairs every B with the A just before it, so slow drift of
the machine falls out of the differences; a two-sided sign test says whether B was slower in more
rounds than a coin would give.

Each child imports this repository's package (``src/`` first on its ``PYTHONPATH``), so the two sides
differ only in what their interpreters hold: torch, torchvision, mmcv, oneDNN. Usage (from the
repository root; B defaults to the interpreter running this script):

    .venv/bin/python bench/compare_stacks.py --python-a /path/to/other/venv/bin/python
    .venv/bin/python bench/compare_stacks.py --python-a OLD --precision bf16 --sizes 640 320 --rounds 8

The other venv needs torch >= 2.1 with its torchvision and the OpenMMLab stack: ``make setup
STACK=system PYTHON=/path/to/python/with/that/torch`` makes one. Untrained weights, as ``make bench``.
Prints a table; ``--out FILE`` also appends one JSON line with every round.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--python-a", required=False, help="interpreter of stack A (the baseline)")
    p.add_argument("--python-b", default=sys.executable, help="interpreter of stack B (default: this one)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--sizes", type=int, nargs="+", default=[640, 320], help="square input sizes (default 640 320)")
    p.add_argument("--rounds", type=int, default=8, help="A B pairs (default 8; a sign test needs 6 for p < 0.05)")
    p.add_argument("--warmup", type=int, default=3, help="untimed forward passes per child and size")
    p.add_argument("--iters", type=int, default=15, help="timed forward passes per child and size (median kept)")
    p.add_argument("--out", type=Path, default=None, help="JSON-lines file to append the rounds to")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not args.child and not args.python_a:
        p.error("--python-a is required: the interpreter of the stack to compare against")
    if args.rounds < 1 or args.iters < 1 or args.warmup < 0:
        p.error("--rounds and --iters must be at least 1, --warmup at least 0")
    return args


# ---------------------------------------------------------------- one measurement (child process)

def measure(sizes: list[int], precision: str, warmup: int, iters: int) -> dict:
    """This interpreter's stack and its median model-only latency (ms) at each size."""
    import torch

    sys.path.insert(0, str(REPO / "bench"))
    from benchmark import (
        build_inference_model,
        detector_for,
        mmcv_ops_backend,
        model_only_forward,
        ms_per_image,
        timed,
        write_test_image,
    )

    ms = {}
    with tempfile.TemporaryDirectory() as tmp:
        image = write_test_image(Path(tmp) / "balloons.jpg")
        for size in sizes:
            detector = detector_for(build_inference_model(size, "cpu"), precision)
            ms[str(size)] = ms_per_image(timed(model_only_forward(detector, *detector.prepare(image)),
                                               warmup, iters, "cpu"))
    return {"python": sys.executable, "torch": torch.__version__, "mmcv_ops": mmcv_ops_backend(), "ms": ms}


def run_child(python: str, args) -> dict:
    """``measure`` in a fresh process of ``python``, this repository's package first on its path."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")])))
    command = [python, str(Path(__file__).resolve()), "--child", "--precision", args.precision,
               "--warmup", str(args.warmup), "--iters", str(args.iters), "--sizes", *map(str, args.sizes)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, check=False)
    if done.returncode != 0:
        raise SystemExit(f"compare_stacks: the child under {python} failed (exit {done.returncode}):\n"
                         f"{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- the paired comparison

def sign_test_p(k: int, n: int) -> float:
    """Two-sided exact sign test: the chance of a split at least as uneven as k of n under a fair coin."""
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(k, n - k) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def paired_summary(a: list[float], b: list[float]) -> dict:
    """Medians of A and B, the median paired difference B - A, and in how many rounds B was slower."""
    if len(a) != len(b) or not a:
        raise ValueError(f"paired_summary needs as many A as B rounds, at least one (got {len(a)} and {len(b)})")
    diffs = [y - x for x, y in zip(a, b, strict=True)]
    slower, faster = sum(d > 0 for d in diffs), sum(d < 0 for d in diffs)
    return {"a": statistics.median(a), "b": statistics.median(b), "diff": statistics.median(diffs),
            "ratio": statistics.median(y / x for x, y in zip(a, b, strict=True)),
            "b_slower": slower, "b_faster": faster,
            "p": sign_test_p(slower, slower + faster)}


def print_summary(rounds: list[dict], args) -> None:
    first_a, first_b = rounds[0]["a"], rounds[0]["b"]
    print(f"A: torch {first_a['torch']}, mmcv ops {first_a['mmcv_ops']} ({first_a['python']})")
    print(f"B: torch {first_b['torch']}, mmcv ops {first_b['mmcv_ops']} ({first_b['python']})")
    print(f"model-only latency [{args.precision}], {len(rounds)} rounds A B, median of {args.iters} per child")
    print(f"{'size':>5}  {'A ms':>8}  {'B ms':>8}  {'B - A':>8}  {'B / A':>6}  B slower  sign test p")
    for size in map(str, args.sizes):
        s = paired_summary([r["a"]["ms"][size] for r in rounds], [r["b"]["ms"][size] for r in rounds])
        print(f"{size:>5}  {s['a']:8.1f}  {s['b']:8.1f}  {s['diff']:+8.1f}  {s['ratio']:6.3f}  "
              f"{s['b_slower']:>2} of {s['b_slower'] + s['b_faster']:<2}  {s['p']:.3f}")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.sizes, args.precision, args.warmup, args.iters)), flush=True)
        return 0
    rounds, start = [], time.monotonic()
    for k in range(args.rounds):
        rounds.append({"a": run_child(args.python_a, args), "b": run_child(args.python_b, args)})
        eta = (time.monotonic() - start) / (k + 1) * (args.rounds - k - 1)
        print(f"round {k + 1}/{args.rounds}: " + "  ".join(
            f"{size} px A {rounds[-1]['a']['ms'][size]:.1f} B {rounds[-1]['b']['ms'][size]:.1f} ms"
            for size in map(str, args.sizes)) + f"  (ETA {eta / 60:.1f} min)", flush=True)
    print()
    print_summary(rounds, args)
    if args.out:
        with args.out.open("a") as f:
            f.write(json.dumps({"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                "precision": args.precision, "warmup": args.warmup, "iters": args.iters,
                                "rounds": rounds}) + "\n")
        print(f"appended the {len(rounds)} rounds to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
