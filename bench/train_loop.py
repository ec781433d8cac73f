"""The real training iteration beside the model's step: what the data pipeline, the hooks and the loop add.

Each setting trains the recipe for a few epochs on the real data (``data/balloon``, from ``balloondet data``)
in a fresh process, and times:

- ``iteration_s``: the median training iteration, from one iteration's end to the next (data loading, the
  step, every hook), within epochs 2 onwards (the first fills caches and starts the workers);
- ``epoch_s``: the median epoch's training time (validation not counted), epochs 2 onwards;
- ``step_s``: the median ``model.train_step`` of the same iterations (forward, loss, backward, optimizer: what
  ``make bench`` times as training throughput), inside the loop;

for every combination of ``--cache`` (the decoded-image cache, ``engine.image_cache``), ``--workers``
(the train dataloader's ``num_workers``) and ``--threads`` (torch's intra-op threads in the main process),
the combinations in a new order each round so that the machine's drift spreads over all of them.

    .venv/bin/python bench/train_loop.py                       # cache on and off; workers and threads from the cores
    .venv/bin/python bench/train_loop.py --workers 0 1 2 --threads 1 2 --rounds 3   # the matrix that chose them

Prints a table and appends one JSON line per setting and round to ``--out``.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = Path(__file__).resolve().parent / "train_loop.jsonl"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None, help="default: the benchmark's recipe (defaults.BENCH_CONFIG)")
    p.add_argument("--data-root", default="data/balloon")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--cache", nargs="+", default=["on", "off"], choices=["on", "off"])
    p.add_argument("--workers", nargs="+", type=int, default=None,
                   help="default: what the recipe's num_workers='auto' gives on this machine (engine.cores)")
    p.add_argument("--threads", nargs="+", type=int, default=None,
                   help="default: the cores this process may use, as train sets them (engine.cores)")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--seed", type=int, default=0, help="shuffles the order of the settings")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--child", help=argparse.SUPPRESS)  # JSON of one setting: run it here and print its figures
    return p.parse_args(argv)


def child(setting: dict) -> dict:
    """Train one setting in this process; the figures as a dict."""
    import torch
    from mmengine.hooks import Hook

    from balloondet.detect.train import train

    torch.set_num_threads(setting["threads"])

    class Timer(Hook):
        priority = "VERY_LOW"

        def __init__(self):
            self.ends, self.steps = [], []  # (epoch, batch, time) of each iteration's end; (epoch, step seconds)

        def before_run(self, runner):
            step = runner.model.train_step

            def timed_step(*args, **kwargs):
                start = time.perf_counter()
                try:
                    return step(*args, **kwargs)
                finally:
                    self.steps.append((runner.epoch, time.perf_counter() - start))

            runner.model.train_step = timed_step

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            self.ends.append((runner.epoch, batch_idx, time.perf_counter()))

    timer = Timer()
    import mmengine.runner

    real_from_cfg = mmengine.runner.Runner.from_cfg

    def from_cfg(cfg):
        runner = real_from_cfg(cfg)
        runner.register_hook(timer)
        return runner

    mmengine.runner.Runner.from_cfg = from_cfg
    workers = setting["workers"]
    with tempfile.TemporaryDirectory() as work:
        train(setting["config"], work_dir=work, device="cpu", epochs=setting["epochs"], data_root=setting["data_root"],
              image_cache=setting["cache"] == "on", quiet=True, threads=setting["threads"],
              cfg_options={"train_dataloader.num_workers": workers, "train_dataloader.persistent_workers": workers > 0})
    iterations = [b[2] - a[2] for a, b in itertools.pairwise(timer.ends) if a[0] == b[0] and a[0] >= 1]
    epochs = {}
    for (e0, _, t0), (e1, _, t1) in itertools.pairwise(timer.ends):
        if e0 == e1 and e0 >= 1:
            epochs[e0] = epochs.get(e0, 0.0) + t1 - t0
    return {"iteration_s": statistics.median(iterations), "epoch_s": statistics.median(epochs.values()),
            "step_s": statistics.median(s for e, s in timer.steps if e >= 1), "iterations": len(iterations)}


def main(argv=None) -> int:
    a = parse_args(argv)
    if a.child:
        print("RESULT " + json.dumps(child(json.loads(a.child))))
        return 0
    sys.path.insert(0, str(ROOT / "src"))
    from balloondet.core import defaults
    from balloondet.engine.cores import loader_workers, usable_cores

    config = a.config or defaults.BENCH_CONFIG
    cores = usable_cores()
    a.workers = a.workers or [loader_workers(cores, "train")]
    a.threads = a.threads or [cores]
    combos = [dict(cache=c, workers=w, threads=t) for c in a.cache for w in a.workers for t in a.threads]
    rng = random.Random(a.seed)
    rows = []
    total = a.rounds * len(combos)
    started = time.perf_counter()
    for r in range(a.rounds):
        order = combos[:]
        rng.shuffle(order)
        for combo in order:
            setting = dict(combo, config=config, data_root=a.data_root, epochs=a.epochs)
            proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(setting)], cwd=ROOT,
                                  capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if proc.returncode or line is None:
                print(proc.stdout[-2000:], proc.stderr[-3000:], file=sys.stderr)
                return 1
            row = dict(setting, round=r, **json.loads(line[7:]))
            row["iteration_per_step"] = row["iteration_s"] / row["step_s"]
            rows.append(row)
            done = len(rows)
            eta = (time.perf_counter() - started) / done * (total - done)
            print(f"[{done}/{total}, ETA {eta / 60:.1f} min] cache {row['cache']:3} workers {row['workers']} "
                  f"threads {row['threads']}: iteration {row['iteration_s']:.3f} s, epoch {row['epoch_s']:.2f} s, "
                  f"step {row['step_s']:.3f} s, iteration/step {row['iteration_per_step']:.2f}", flush=True)
            with open(a.out, "a") as f:
                f.write(json.dumps(dict(row, date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))) + "\n")
    print("\nmedians over the rounds:")
    for combo in combos:
        mine = [r for r in rows if all(r[k] == v for k, v in combo.items())]
        print(f"cache {combo['cache']:3} workers {combo['workers']} threads {combo['threads']}: "
              f"iteration {statistics.median(r['iteration_s'] for r in mine):.3f} s, "
              f"epoch {statistics.median(r['epoch_s'] for r in mine):.2f} s, "
              f"step {statistics.median(r['step_s'] for r in mine):.3f} s, "
              f"iteration/step {statistics.median(r['iteration_per_step'] for r in mine):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
