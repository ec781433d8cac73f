"""cam-eval's output: what one map measured (``MapScore``), the whole evaluation (``CamEvalResult``), and
what is made of it: the Markdown table (``format_table``), the files (``write_table``: ``cam_eval.json`` and
``cam_eval.md``) and the deletion/insertion figure (``plot_cam_eval``). The measuring is ``explain.cam_eval``'s.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from balloondet.core.files import write_json_atomic
from balloondet.core.images import save_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

RANDOM = "randomcam"  # grad-cam's RandomCAM, one row per layer
SOBEL = "sobel"  # an edge map of the image: one row, its layer column says "image"
IMAGE = "image"  # the layer column of a map of the whole image (Sobel, D-RISE)


@dataclass
class MapScore:
    """The measurements of one map (method, layer) of one image."""

    image: str
    method: str
    layer: str
    focus: float
    deletion: np.ndarray  # score after each step (index 0: the full image)
    insertion: np.ndarray  # score after each step (index 0: the blurred image)
    deletion_auc: float
    insertion_auc: float
    randomisation: float  # Spearman rank correlation with the re-initialised model's map (nan if not run)
    randomisation_in_boxes: float  # the same, over the pixels inside the boxes only
    seconds: float  # the map, its deletion and insertion (not the randomisation check)
    pointing_game: float = math.nan  # 1: the map's maximum in the boxes (within the tolerance); nan: constant map
    energy_pointing_game: float = math.nan  # the map's share inside the boxes
    pointing_chance: float = math.nan  # the boxes' share of the image, grown by the tolerance


@dataclass
class CamEvalResult:
    """``rows``: the table (one dict per method x layer); ``scores``: every map's measurements."""

    rows: list[dict]
    scores: list[MapScore]
    fractions: np.ndarray  # share of the pixels removed (deletion) or revealed (insertion) at each step
    images: list[str]
    skipped: list[str] = field(default_factory=list)
    seconds_per_image: float = math.nan
    drise_masks: int | None = None  # masks per D-RISE map, when a row is D-RISE's
    paths: dict[str, Path] = field(default_factory=dict)  # json, markdown, figure
    figure: Figure | None = None

    def curves(self, method: str, layer: str) -> tuple[np.ndarray, np.ndarray]:
        """Mean (deletion, insertion) curves of one row over the images."""
        mine = [s for s in self.scores if s.method == method and s.layer == layer]
        return np.mean([s.deletion for s in mine], 0), np.mean([s.insertion for s in mine], 0)


def format_table(rows: Sequence[dict]) -> str:
    """The table as Markdown."""

    def num(value: float | None, digits: int = 3) -> str:
        return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"

    lines = ["| method | layer | stride | focus | deletion AUC ↓ | insertion AUC ↑ | randomisation ρ ↓ "
             "| ρ in boxes ↓ | pointing game ↑ | energy PG ↑ | images |", "|---" * 11 + "|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['layer']} | {r['stride'] or '–'} | {num(r['focus'], 2)} | "
                     f"{num(r['deletion_auc'])} | {num(r['insertion_auc'])} | {num(r['randomisation_corr'], 2)} | "
                     f"{num(r['randomisation_corr_in_boxes'], 2)} | {num(r.get('pointing_game', math.nan), 2)} | "
                     f"{num(r.get('energy_pointing_game', math.nan), 2)} | {r['images']} |")
    return "\n".join(lines)


def plot_cam_eval(result: CamEvalResult, out: str | Path | None = None, layers: Sequence[str] | None = None) -> Figure:
    """Mean deletion and insertion curves per row (``layers``: only those rows, the Sobel row always)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for row in result.rows:
        if layers is not None and row["layer"] not in layers and row["layer"] != IMAGE:
            continue
        deletion, insertion = result.curves(row["method"], row["layer"])
        label = row["method"] if row["layer"] == IMAGE else f"{row['method']} s{row['stride'] or row['layer']}"
        style = ":" if row["method"] in (RANDOM, SOBEL) else "-"
        for ax, curve, key in ((axes[0], deletion, "deletion_auc"), (axes[1], insertion, "insertion_auc")):
            ax.plot(result.fractions, curve, style, label=f"{label} ({row[key]:.3f})")
    for ax, title in zip(axes, ("deletion (lower is better)", "insertion (higher is better)"), strict=True):
        ax.set_title(title)
        ax.set_xlabel("fraction of pixels removed" if ax is axes[0] else "fraction of pixels revealed")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("matched box score (mean over boxes and images)")
    fig.tight_layout()
    return save_figure(fig, out, dpi=80)


def write_table(result: CamEvalResult, out: str | Path) -> dict[str, Path]:
    """``cam_eval.json`` (the table, every map's AUCs, the settings) and ``cam_eval.md`` in the folder ``out``."""
    out = Path(out)
    per_map = [{"image": s.image, "method": s.method, "layer": s.layer, "focus": s.focus,
                "deletion_auc": s.deletion_auc, "insertion_auc": s.insertion_auc,
                "randomisation_corr": s.randomisation, "randomisation_corr_in_boxes": s.randomisation_in_boxes,
                "pointing_game": s.pointing_game, "energy_pointing_game": s.energy_pointing_game,
                "pointing_chance": s.pointing_chance, "seconds": s.seconds}
               for s in result.scores]
    doc = {"rows": result.rows, "maps": per_map, "fractions": result.fractions.tolist(), "images": result.images,
           "skipped": result.skipped, "seconds_per_image": result.seconds_per_image,
           "drise_masks": result.drise_masks}
    paths = {"json": write_json_atomic(_no_nan(doc), out / "cam_eval.json"), "markdown": out / "cam_eval.md"}
    paths["markdown"].write_text(format_table(result.rows) + "\n")
    return paths


def _no_nan(obj: object) -> object:
    """NaN -> None: strict JSON has no NaN."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _no_nan(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_no_nan(v) for v in obj]
    return obj
