"""Training curves in the style of Fig. 1 (right) and Fig. 5, and each row's final accuracy
beside the paper's: three panels, one legend outside the data."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from ftbnn_exp.report.runs import Run


def plot_curves(runs: list[Run], title: str, path: Path,
                paper_top1: dict[str, float] | None = None) -> Path:
    """Val top-1 and train loss per epoch (one line per row, integer epoch ticks), and a bar
    panel of each row's final test top-1 with the paper's ImageNet top-1 beside it."""
    paper_top1 = paper_top1 or {}
    ordered = sorted(runs, key=lambda r: r.row or "")
    figure, (accuracy, loss, final) = plt.subplots(
        1, 3, figsize=(17, 5.5), gridspec_kw={"width_ratios": [1, 1, 0.9]})
    colours = plt.get_cmap("tab20")
    lines = []
    for index, run in enumerate(ordered):
        colour = colours(index % 20)
        label = run.row or run.path.name
        points = [(p["epoch"], p["val/top1"]) for p in run.curve if "val/top1" in p]
        (line,) = accuracy.plot(*zip(*points, strict=True), color=colour, marker="o",
                                markersize=3, label=label) if points else (None,)
        losses = [(p["epoch"], p["train/loss"]) for p in run.curve if "train/loss" in p]
        if losses:
            loss.plot(*zip(*losses, strict=True), color=colour, marker="o", markersize=3)
        if line is not None:
            lines.append(line)
    for axis, name in ((accuracy, "val top-1 (%)"), (loss, "train loss")):
        axis.set_xlabel("epoch")
        axis.set_ylabel(name)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
    accuracy.set_title("validation top-1")
    loss.set_title("training loss")
    rows = [run.row or run.path.name for run in ordered]
    ours = [run.final("test/top1") or 0.0 for run in ordered]
    positions = range(len(rows))
    final.barh([p + 0.2 for p in positions], ours, height=0.4, color="tab:blue",
               label="ours: test top-1 (this run's data)")
    final.barh([p - 0.2 for p in positions], [paper_top1.get(r, 0.0) for r in rows],
               height=0.4, color="tab:gray", label="paper: top-1 on ImageNet (reference)")
    final.set_yticks(list(positions), rows, fontsize=8)
    final.set_xlabel("top-1 (%)")
    final.set_title("final accuracy")
    final.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12))
    figure.legend(handles=lines, loc="center right", fontsize=7, title="row",
                  bbox_to_anchor=(1.0, 0.5))
    figure.suptitle(title)
    figure.tight_layout(rect=(0, 0, 0.9, 1))
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
