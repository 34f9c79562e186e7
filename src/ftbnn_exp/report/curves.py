"""Training curves in the style of Fig. 1 (right) and Fig. 5: val top-1 solid, train loss
dashed on a second axis, one line pair per row."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from ftbnn_exp.report.runs import Run


def plot_curves(runs: list[Run], title: str, path: Path) -> Path:
    figure, accuracy_axis = plt.subplots(figsize=(9, 5.5))
    loss_axis = accuracy_axis.twinx()
    colours = plt.get_cmap("tab20")
    for index, run in enumerate(sorted(runs, key=lambda r: r.row or "")):
        epochs = [p["epoch"] for p in run.curve if "val/top1" in p]
        colour = colours(index % 20)
        label = run.row or run.path.name
        if epochs:
            accuracy_axis.plot(epochs, [p["val/top1"] for p in run.curve if "val/top1" in p],
                               color=colour, label=label)
        losses = [(p["epoch"], p["train/loss"]) for p in run.curve if "train/loss" in p]
        if losses:
            loss_axis.plot(*zip(*losses, strict=True), color=colour, linestyle="--")
    accuracy_axis.set_xlabel("epoch")
    accuracy_axis.set_ylabel("val top-1 (%) — solid")
    loss_axis.set_ylabel("train loss — dashed")
    accuracy_axis.set_title(title)
    accuracy_axis.legend(fontsize=7, ncol=2, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
