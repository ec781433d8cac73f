"""The GPU check's Python half (scripts/gpu_check.sh sets up the stack, then runs this).

Runs the mission's steps in one process on one device and times each: data (the real archive,
converted), train (the recipe `balloondet train auto` picks), test (COCO bbox metrics of the final
checkpoint), predict, featmap and cam on the val image with the most balloons, training curves.
Writes OUT/gpu_check.json (each step's seconds and peak GPU memory, mAP, the GPU, the versions,
how mmcv was installed) and the figures into OUT, with timestamped progress on stdout.
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from pathlib import Path

T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"[gpu-check {time.strftime('%H:%M:%S')} +{time.monotonic() - T0:.0f}s] {msg}", flush=True)


class Step:
    """Times a step and records the GPU memory it peaked at."""

    def __init__(self, report: dict, name: str, device: str):
        self.report, self.name, self.device = report, name, device

    def __enter__(self):
        import torch

        if self.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        log(f"{self.name} ...")
        self.start = time.monotonic()
        return self

    def __exit__(self, exc_type, exc, tb):
        import torch

        if self.device == "cuda":
            torch.cuda.synchronize()
        seconds = time.monotonic() - self.start
        entry = {"seconds": round(seconds, 1), "ok": exc_type is None}
        if self.device == "cuda":
            entry["peak_gpu_memory_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        if exc_type is not None:
            entry["error"] = f"{exc_type.__name__}: {exc}"
        self.report["steps"][self.name] = entry
        log(f"{self.name}: {'done' if exc_type is None else 'FAILED'} in {seconds:.1f} s")
        return False


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--archive", required=True, help="the balloon archive (inside the checkout)")
    p.add_argument("--out", required=True, help="folder for gpu_check.json and the figures")
    p.add_argument("--config", default="auto", help="the recipe (default: what `balloondet train auto` picks)")
    p.add_argument("--epochs", type=int, help="shorten the recipe (a CPU dry run)")
    p.add_argument("--train-seconds", type=float, default=300, help="stop training after the epoch past this")
    p.add_argument("--setup-seconds", type=float, help="how long the set-up took (measured by the shell)")
    p.add_argument("--setup-log", help="the set-up's log: the line saying where mmcv's nms comes from is kept")
    a = p.parse_args(argv)

    import torch

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {"device": a.device, "steps": {}, "python": platform.python_version(),
                    "torch": torch.__version__, "cuda": torch.version.cuda}
    if a.setup_seconds is not None:
        report["steps"]["setup"] = {"seconds": a.setup_seconds, "ok": True}
    if a.setup_log and Path(a.setup_log).is_file():
        report["mmcv_install"] = [line.strip() for line in Path(a.setup_log).read_text().splitlines()
                                  if "nms from" in line]
    if a.device == "cuda":
        props = torch.cuda.get_device_properties(0)
        report["gpu"] = {"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
                         "capability": f"{props.major}.{props.minor}", "count": torch.cuda.device_count()}
        log(f"GPU: {props.name}, {report['gpu']['memory_gib']} GiB, sm {props.major}.{props.minor}")

    def save() -> None:
        (out / "gpu_check.json").write_text(json.dumps(report, indent=1) + "\n")

    import mmcv
    import mmdet
    import mmengine

    report.update(mmcv=mmcv.__version__, mmengine=mmengine.__version__, mmdet=mmdet.__version__)
    try:
        with Step(report, "mmcv_ops", a.device):
            from mmcv.ops import nms

            boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.], [20., 20., 30., 30.]], device=a.device)
            _, keep = nms(boxes, torch.tensor([0.9, 0.8, 0.7], device=a.device), iou_threshold=0.5)
            assert keep.tolist() == [0, 2], keep

        from balloondet.data.prepare import prepare_data
        from balloondet.detect.curves import plot_curves
        from balloondet.detect.predict import predict
        from balloondet.detect.test import evaluate_checkpoint
        from balloondet.engine.config import choose_recipe
        from balloondet.engine.detector import Detector
        from balloondet.jobs.readme_figures import example_image

        data_root = Path("data/balloon")
        with Step(report, "data", a.device):
            prepare_data(source=a.archive, root=data_root, force=True)

        config, why = choose_recipe(a.device) if a.config == "auto" else (a.config, "asked for")
        report["recipe"] = {"config": config, "why": why}
        log(f"recipe: {config} ({why})")
        work_dir = Path("work_dirs") / "gpu_check"
        if work_dir.exists():
            shutil.rmtree(work_dir)
        from balloondet.detect.train import train

        with Step(report, "train", a.device):
            train(config, work_dir=work_dir, device=a.device, epochs=a.epochs, time_budget=a.train_seconds)
        last = Path((work_dir / "last_checkpoint").read_text().strip())
        checkpoint = last if last.is_absolute() else work_dir / last.name
        report["train"] = {"checkpoint": checkpoint.name, "epochs_done": int(checkpoint.stem.split("_")[-1])}
        save()

        with Step(report, "test", a.device):
            metrics = evaluate_checkpoint(config, checkpoint, work_dir=work_dir, device=a.device)
        report["metrics"] = {k.replace("coco/", ""): round(v, 4) for k, v in metrics.items()}
        save()

        image = example_image(data_root)
        with Step(report, "load_model", a.device):
            detector = Detector.load(work_dir / f"{Path(config).stem}.py", checkpoint, a.device)
        with Step(report, "predict", a.device):
            entries = predict(detector, image, out=work_dir / "predict")
        report["predict"] = {"image": image.name, "boxes": len(entries[0]["detections"])}
        shutil.copyfile(work_dir / "predict" / image.name, out / "prediction.jpg")
        from balloondet.explain.featmap import featmap

        with Step(report, "featmap", a.device):
            featmap(detector, image, out=out)
        from balloondet.explain.cam import cam

        with Step(report, "cam", a.device):
            best = max((d["score"] for d in entries[0]["detections"]), default=0.0)
            # a weak model (a short dry run) may have no box at the default threshold: explain its best ones
            cam(detector, image, out=out / "grad_visualization.png", **({} if best >= 0.3 else {"score_thr": 0.0}))
        with Step(report, "curves", a.device):
            plot_curves(work_dir, out=out / "training_curves.png")
        scalars = sorted(work_dir.glob("*/vis_data/scalars.json"))
        if scalars:  # the run's per-iteration losses and per-validation metrics
            shutil.copyfile(scalars[-1], out / "scalars.json")
            # mmengine resets the peak every iteration, so the train step's own reading is the last
            # iteration's; its log holds each iteration's peak
            logged = [json.loads(line).get("memory") for line in scalars[-1].read_text().splitlines() if line]
            logged = [m for m in logged if m is not None]
            if logged and a.device == "cuda":
                report["steps"]["train"]["peak_gpu_memory_mib"] = max(logged)
                save()
        report["ok"] = True
    except Exception as err:  # noqa: BLE001  (the report says which step failed; the log has the traceback)
        import traceback

        traceback.print_exc()
        report["ok"] = False
        report["error"] = f"{type(err).__name__}: {err}"
    report["total_seconds"] = round(time.monotonic() - T0, 1)
    save()
    log(f"report: {out / 'gpu_check.json'}")
    print(json.dumps(report, indent=1))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
