"""Training curves from a run's own logs (mmengine's LocalVisBackend ``scalars.json``)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from balloondet.core import defaults
from balloondet.core.errors import DataError
from balloondet.core.images import save_figure
from balloondet.engine.config import read_saved_config

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
            if any(k.startswith(("coco/", "val/")) for k in rec):
                # ValLossHook writes its val/ losses as a record of their own, at the validation's step
                val[rec["step"]] = {**val.get(rec["step"], {}), **rec}
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
        line, = ax_loss.plot(x, [r.get(key) for r in train], label=key, lw=1.2 if key == "loss" else 0.9)
        points = [(r["step"], r[f"val/{key}"]) for r in val if f"val/{key}" in r]
        if points:  # the same loss on the val split (ValLossHook), in the train curve's colour
            ax_loss.plot(*zip(*points, strict=True), "o--", color=line.get_color(), ms=3, lw=1, label=f"val/{key}")
    has_val_loss = any("val/loss" in r for r in val)
    ax_loss.set(title="loss: training (lines), val (dashed)" if has_val_loss else "training loss",
                xlabel="epoch", ylabel="loss")
    ax_loss.legend(fontsize=8)
    ax_lr.plot(x, [r["lr"] for r in train], color="tab:purple")
    ax_lr.set(title="learning rate", xlabel="epoch")
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    switch = switch_epoch(work_dir)
    if switch is not None:  # the epochs after it train without Mosaic: losses and mAP often jump there
        for ax in (ax_loss, ax_lr, ax_map):
            ax.axvline(switch, color="gray", ls=":", lw=1.2, label=f"no Mosaic after epoch {switch}"
                       if ax is ax_map else None)
    val = [r for r in val if "coco/bbox_mAP" in r]  # the mAP panel's records
    if val:
        values = []
        for key, style in (("coco/bbox_mAP", "o-"), ("coco/bbox_mAP_50", "s--"), ("coco/bbox_mAP_75", "^:")):
            points = [(r["step"], r[key]) for r in val if key in r]
            values += [y for _, y in points]
            ax_map.plot([e for e, _ in points], [y for _, y in points], style, label=key.replace("coco/", ""), ms=3)
        best = max(val, key=lambda r: r["coco/bbox_mAP"])
        # the best value goes into the legend, which matplotlib places clear of the curves
        ax_map.plot(best["step"], best["coco/bbox_mAP"], "*", color="gold", mec="black", ms=13, zorder=5,
                    label=f"best mAP {best['coco/bbox_mAP']:.3f} (epoch {best['step']})")
        ax_map.set_ylim(*fitted_limits(values))
        ax_map.legend(loc="best", fontsize=8)
    ax_map.set(title="val bbox mAP (COCO)", xlabel="epoch")
    for ax in (ax_loss, ax_lr, ax_map):
        ax.grid(alpha=0.3)
    fig.suptitle(f"training curves: {Path(work_dir).name}")
    fig.tight_layout()
    return save_figure(fig, out, dpi=90)


def fitted_limits(values: list[float], pad: float = 0.08) -> tuple[float, float]:
    """y limits around ``values`` with a margin, kept within [0, 1] (mAP)."""
    lo, hi = min(values, default=0.0), max(values, default=1.0)
    margin = max((hi - lo) * pad, 0.02)
    return max(0.0, lo - margin), min(1.0, hi + margin)


def switch_epoch(work_dir: str | Path) -> int | None:
    """The epoch from which ``PipelineSwitchHook`` trains without Mosaic, from the config the run saved
    (None: no switch, or no readable config)."""
    cfg = read_saved_config(work_dir)
    hooks = (cfg.get("custom_hooks") or []) if cfg is not None else []
    epochs = [h["switch_epoch"] for h in hooks if h.get("type") == "PipelineSwitchHook" and "switch_epoch" in h]
    return int(epochs[0]) if epochs else None
