"""The `test` step: COCO metrics, the bootstrap interval, short output."""
from __future__ import annotations

import json

import pytest

from balloondet.cli import main
from balloondet.detect.test import evaluate_checkpoint

SMOKE = "rtmdet_tiny_smoke_synthetic"


@pytest.mark.train
def test_cli_test_prints_the_coco_summary(trained_smoke, synthetic_root, tmp_path, capsys):
    code = main(["test", SMOKE, str(trained_smoke["checkpoint"]), "--work-dir", str(tmp_path),
                 "--device", "cpu", "--data-root", str(synthetic_root)])
    out = capsys.readouterr().out
    assert code == 0
    summary = [line for line in out.splitlines() if line.strip().startswith("Average ")]
    assert len(summary) == 12, out[-3000:]
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]" in summary[0]


@pytest.mark.train
def test_quiet_test_prints_the_summary_and_the_interval(trained_smoke, synthetic_root, tmp_path, capfd):
    from balloondet.detect.test import metrics_table

    metrics = evaluate_checkpoint(SMOKE, trained_smoke["checkpoint"], work_dir=tmp_path, device="cpu",
                                  data_root=synthetic_root, quiet=True, bootstrap=100)
    out, err = capfd.readouterr()
    summary = [line for line in out.splitlines() if line.startswith(" Average")]
    assert len(summary) == 12
    assert len((out + err).strip().splitlines()) <= 13, out + err  # the summary (and the precision line)
    lo, hi = metrics["coco/bbox_mAP_ci95_lo"], metrics["coco/bbox_mAP_ci95_hi"]
    assert lo <= metrics["coco/bbox_mAP"] + 5e-4 and metrics["coco/bbox_mAP"] - 5e-4 <= hi  # mmdet rounds to 3
    saved = json.loads((tmp_path / "test_metrics.json").read_text())
    assert saved["bbox_mAP_ci95"] == [lo, hi] and saved["bootstrap"] == 100
    assert "95 % bootstrap interval" in metrics_table(metrics)
