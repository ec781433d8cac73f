"""The val loss (hooks.ValLossHook): logged at each validation, and training unchanged by it."""
import json

import pytest

from balloondet.curves import plot_curves, read_scalars
from balloondet.train import train

SMOKE = "rtmdet_tiny_smoke_synthetic"


@pytest.mark.slow
def test_val_loss_is_logged_and_leaves_training_alone(synthetic_root, tmp_path):
    kw = dict(device="cpu", epochs=2, data_root=synthetic_root, precision="auto", quiet=True,
              cfg_options={"train_cfg.val_interval": 1, "randomness.seed": 3})
    with_loss = train(SMOKE, work_dir=tmp_path / "with", **kw)
    without = train(SMOKE, work_dir=tmp_path / "without", val_loss=False, **kw)

    train_with, val_with = read_scalars(with_loss)
    train_without, val_without = read_scalars(without)
    # the same seed trains the same weights: every logged training loss is equal, step by step
    keys = ("loss", "loss_cls", "loss_bbox")
    assert [[r[k] for k in keys] for r in train_with] == [[r[k] for k in keys] for r in train_without]
    assert [r["coco/bbox_mAP"] for r in val_with] == [r["coco/bbox_mAP"] for r in val_without]

    assert [r["step"] for r in val_with] == [1, 2]  # one record per validation, at its epoch
    for rec in val_with:
        assert {"val/loss", "val/loss_cls", "val/loss_bbox"} <= set(rec)
        assert rec["val/loss"] == pytest.approx(rec["val/loss_cls"] + rec["val/loss_bbox"], rel=1e-5)
        assert rec["val/loss"] > 0
    assert not any("val/loss" in r for r in val_without)
    # the raw scalars hold the keys as written, in a record of their own
    raw = [json.loads(line) for f in with_loss.glob("*/vis_data/scalars.json") for line in f.read_text().splitlines()]
    assert sum("val/loss" in r for r in raw) == 2

    fig = plot_curves(with_loss, out=tmp_path / "curves.png")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "val/loss" in labels and "loss" in labels
