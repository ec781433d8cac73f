"""Training curves from a run's own logs (mmengine's LocalVisBackend ``scalars.json``)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from . import defaults
from .errors import DataError
from .io import save_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def read_scalars(work_dir: str | Path) -> tuple[list[dict], list[dict]]:
    """(train records, val records) from every ``*/vis_data/scalars.json`` in ``work_dir``.

    A resumed run writes a second timestamped folder; records are merged in time order and
    a later record for the same step replaces an earlier one.
    """
    files = sorted(Path(work_dir).glob("*/vis_data/scalars.json"))
    if not files:
        raise DataError(f"{work_dir}: no */vis_data/scalars.json; is this a training work dir?")
    train, val = {}, {}
    for f in files:
        for line in f.read_text().splitlines():
            if not line.strip():
                continue
            rec = json.loads(line)
            if any(k.startswith("coco/") for k in rec):
                val[rec["step"]] = rec
            elif "loss" in rec:
                train[rec["step"]] = rec
    return [train[k] for k in sorted(train)], [val[k] for k in sorted(val)]


def plot_curves(work_dir: str | Path, out: str | Path | None = f"{defaults.FIGURES_DIR}/{defaults.CURVES_FIGURE}",
                ) -> Figure:
    """Loss terms, learning rate and val bbox mAP against epoch; returns the figure."""
    import matplotlib.pyplot as plt

    train, val = read_scalars(work_dir)
    if not train:
        raise DataError(f"{work_dir}: the logs hold no training iterations yet")
    iters_per_epoch = max(r["iter"] for r in train) / max(r["epoch"] for r in train)
    x = [r["iter"] / iters_per_epoch for r in train]
    fig, (ax_loss, ax_lr, ax_map) = plt.subplots(1, 3, figsize=(15, 4))
    for key in sorted(k for k in train[-1] if k.startswith("loss")):
        ax_loss.plot(x, [r.get(key) for r in train], label=key, lw=1.2 if key == "loss" else 0.9)
    ax_loss.set(title="training loss", xlabel="epoch", ylabel="loss")
    ax_loss.legend()
    ax_lr.plot(x, [r["lr"] for r in train], color="tab:purple")
    ax_lr.set(title="learning rate", xlabel="epoch")
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    if val:
        epochs = [r["step"] for r in val]
        for key, style in (("coco/bbox_mAP", "o-"), ("coco/bbox_mAP_50", "s--"), ("coco/bbox_mAP_75", "^:")):
            ax_map.plot(epochs, [r[key] for r in val], style, label=key.replace("coco/", ""), ms=3)
        best = max(val, key=lambda r: r["coco/bbox_mAP"])
        ax_map.annotate(f"best mAP {best['coco/bbox_mAP']:.3f}\n(epoch {best['step']})",
                        (best["step"], best["coco/bbox_mAP"]), textcoords="offset points", xytext=(-60, 15),
                        arrowprops=dict(arrowstyle="->"))
        ax_map.legend(loc="lower right")
    ax_map.set(title="val bbox mAP (COCO)", xlabel="epoch", ylim=(0, 1))
    for ax in (ax_loss, ax_lr, ax_map):
        ax.grid(alpha=0.3)
    fig.suptitle(f"training curves: {Path(work_dir).name}")
    fig.tight_layout()
    return save_figure(fig, out, dpi=90)
