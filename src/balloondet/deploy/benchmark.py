"""`balloondet benchmark CONFIG CHECKPOINT`: every format side by side on one machine, in one run, as
Ultralytics' benchmark mode does: file size, val mAP and AP50, milliseconds per image, and whether each
export's detections agree with PyTorch's on every val image.

Each format is tested through the same loop (``evaluate.evaluate_exported``, which also warms it up), then timed
on the decoded photos (``infer``: resize, network, post-processing; decoding and drawing aside), the formats
taking turns. PyTorch runs as `predict` does (``Detector``: channels-last on the CPU, fp32).
"""
from __future__ import annotations

import platform
from pathlib import Path
from typing import Any, Sequence

from balloondet.core import defaults
from balloondet.core.files import display_path, load_json, write_json_atomic
from balloondet.deploy.backend import BACKENDS, ExportedDetector, cpu_threads
from balloondet.deploy.evaluate import agreement, evaluate_exported
from balloondet.deploy.export import default_export_path, export_model, file_size, pipeline_geometry

BENCHMARK_JSON = "benchmark.json"
ROUNDS = 3  # timed passes over the val photos per format


def machine() -> str:
    """The CPU this ran on, in words."""
    name = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        name = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                     if line.startswith("model name")), name)
    return f"{name}, {cpu_threads()} cores"


def benchmark(config: str | Path, checkpoint: str | Path, data_root: str | Path = defaults.DATA_ROOT,
              formats: Sequence[str] = BACKENDS, work_dir: str | Path | None = None,
              score_thr: float = defaults.SCORE_THR, rounds: int = ROUNDS) -> list[dict[str, Any]]:
    """Export ``checkpoint`` in each format (beside it, ``default_export_path``), test each on the val split,
    compare its detections with PyTorch's, then time it: ``rounds`` passes over the decoded val photos, the
    formats taking turns (so a slow moment of a shared machine falls on all of them), the median per image.
    Returns the rows and writes them to ``WORK_DIR/benchmark.json`` (default: the checkpoint's folder /
    ``benchmark``); prints the table."""
    import statistics
    import time

    import mmcv

    from balloondet.engine.detector import Detector

    work_dir = Path(work_dir or Path(checkpoint).parent / "benchmark")
    torch_detector = Detector.load(config, checkpoint, device="cpu", precision="fp32")
    gt = load_json(Path(data_root) / "val.json", "the converted val split")
    photos = [mmcv.imread(str(Path(data_root) / "val" / img["file_name"])) for img in gt["images"]]
    reference = [torch_detector.infer(p) for p in photos]
    models, rows = {}, []
    for fmt in formats:
        if fmt == "torch":
            model, path = torch_detector, Path(checkpoint)
        else:
            path = export_model(config, checkpoint, fmt, default_export_path(checkpoint, fmt))
            model = ExportedDetector.load(path, fmt, classes=torch_detector.classes)
        models[fmt] = model
        metrics = evaluate_exported(model, work_dir / fmt, data_root, bootstrap=0, quiet=True)
        checks = [agreement(ref, model.infer(p), score_thr) for ref, p in zip(reference, photos, strict=True)]
        rows.append({"format": fmt, "file": display_path(path), "bytes": file_size(path),
                     "map": metrics["coco/bbox_mAP"], "ap50": metrics["coco/bbox_mAP_50"],
                     "agrees_with_torch": all(c["ok"] for c in checks),
                     "boxes_compared": sum(c["count"][0] for c in checks),
                     "max_box_diff": max(c["box_diff"] for c in checks),
                     "max_score_diff": max(c["score_diff"] for c in checks)})
    seconds: dict[str, list[float]] = {fmt: [] for fmt in formats}
    for _ in range(rounds):
        for fmt, model in models.items():
            for photo in photos:
                start = time.perf_counter()
                model.infer(photo)
                seconds[fmt].append(time.perf_counter() - start)
    for row in rows:
        row["ms_per_image"] = 1000 * statistics.median(seconds[row["format"]])
    base = next((r["ms_per_image"] for r in rows if r["format"] == "torch"), None)
    for row in rows:
        row["speedup"] = base / row["ms_per_image"] if base else None
    scale = pipeline_geometry(torch_detector.model.cfg)["scale"]
    write_json_atomic({"config": str(config), "checkpoint": display_path(checkpoint), "machine": machine(),
                       "images": len(photos), "rounds": rounds, "scale": list(scale), "score_thr": score_thr,
                       "rows": rows}, work_dir / BENCHMARK_JSON)
    print(f"{machine()}; {len(photos)} val images resized to fit {scale[0]}x{scale[1]}, fp32; median of {rounds} "
          f"rounds (formats taking turns); detections compared at score >= {score_thr}")
    print(benchmark_table(rows))
    return rows


def benchmark_table(rows: list[dict[str, Any]]) -> str:
    """The rows as Markdown."""
    lines = ["| format | size | val mAP | AP50 | ms per image | vs torch | same detections as torch (boxes compared) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        same = f"yes ({r['boxes_compared']})" if r["agrees_with_torch"] else \
            f"no: boxes {r['max_box_diff']:.2g} px, scores {r['max_score_diff']:.2g} apart ({r['boxes_compared']})"
        lines.append(f"| {r['format']} | {r['bytes'] / 1e6:.1f} MB | {r['map']:.3f} | {r['ap50']:.3f} | "
                     f"{r['ms_per_image']:.0f} | {r['speedup']:.2f}x | {same if r['format'] != 'torch' else '-'} |")
    return "\n".join(lines)
