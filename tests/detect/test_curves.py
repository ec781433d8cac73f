"""The training curves: from a run's logs, with the pipeline switch marked."""
from __future__ import annotations

import pytest

from balloondet.detect.curves import plot_curves, read_scalars
from balloondet.engine.config import build_config


def test_curves_mark_the_pipeline_switch(tmp_path):
    from balloondet.detect.curves import fitted_limits, switch_epoch

    cfg = build_config("rtmdet_tiny_cpu-scratch_balloon", epochs=50)
    cfg.dump(str(tmp_path / "run.py"))
    expected = [h["switch_epoch"] for h in cfg.custom_hooks if h["type"] == "PipelineSwitchHook"][0]
    assert switch_epoch(tmp_path) == expected < 50
    assert switch_epoch(tmp_path / "nothing") is None
    lo, hi = fitted_limits([0.2, 0.6])
    assert 0.15 < lo < 0.2 and 0.6 < hi < 0.65
    assert fitted_limits([0.0, 1.0]) == (0.0, 1.0)


@pytest.mark.train
def test_training_curves_from_logs(trained_smoke, tmp_path):
    train, val = read_scalars(trained_smoke["work_dir"])
    assert train and val
    assert {"loss", "loss_cls", "loss_bbox", "lr"} <= set(train[-1])
    fig = plot_curves(trained_smoke["work_dir"], out=tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 10_000
    titles = [ax.get_title() for ax in fig.axes]
    # the run trained with ValLossHook: its val losses are drawn beside the training losses
    assert titles == ["loss: training (lines), val (dashed)", "learning rate", "val bbox mAP (COCO)"]
    assert all({"val/loss", "val/loss_cls", "val/loss_bbox"} <= set(r) for r in val)
    labels = {t.get_text() for t in fig.axes[0].get_legend().get_texts()}
    assert {"loss", "val/loss", "val/loss_cls", "val/loss_bbox"} <= labels
    assert fig.axes[0].get_lines()[0].get_xdata()[-1] == pytest.approx(trained_smoke["epochs"])
