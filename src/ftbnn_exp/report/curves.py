"""Training curves in the style of Fig. 1 (right) and Fig. 5, and each row's final accuracy
over its seeds beside the paper's: three panels, one legend outside the data."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from ftbnn_exp.report.runs import Run
from ftbnn_exp.report.seeds import Spread
from ftbnn_exp.report.tables import outcome


def plot_curves(results: dict[str, list[Run]], title: str, path: Path,
                paper_top1: dict[str, float] | None = None) -> Path:
    """Val top-1 and train loss per epoch (a colour per row, a line per seed, integer epoch
    ticks), and a panel of each row's final test top-1: the mean over its completed seeds
    with their spread (± std) and each seed as a dot, the paper's ImageNet top-1 beside it."""
    figure, (accuracy, loss, final) = plt.subplots(
        1, 3, figsize=(17, 5.5), gridspec_kw={"width_ratios": [1, 1, 0.9]})
    rows = sorted(results)
    lines = [line for index, row in enumerate(rows)
             if (line := _row_curves(accuracy, loss, row, results[row], _colour(index)))]
    for axis, name in ((accuracy, "val top-1 (%)"), (loss, "train loss")):
        axis.set_xlabel("epoch")
        axis.set_ylabel(name)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
    accuracy.set_title("validation top-1 (a line per seed)")
    loss.set_title("training loss")
    _final_panel(final, rows, results, paper_top1 or {})
    figure.legend(handles=lines, loc="center right", fontsize=7, title="row",
                  bbox_to_anchor=(1.0, 0.5))
    figure.suptitle(title)
    figure.tight_layout(rect=(0, 0, 0.9, 1))
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def _colour(index: int) -> tuple[float, ...]:
    return plt.get_cmap("tab20")(index % 20)


def _row_curves(accuracy: Axes, loss: Axes, row: str, seeds: list[Run],
                colour: tuple[float, ...]) -> Line2D | None:
    """One row's seeds in one colour; the first line drawn stands for the row in the legend."""
    first = None
    for run in seeds:
        points = [(p["epoch"], p["val/top1"]) for p in run.curve if "val/top1" in p]
        if points:
            (line,) = accuracy.plot(*zip(*points, strict=True), color=colour, marker="o",
                                    markersize=3, label=row)
            first = first or line
        losses = [(p["epoch"], p["train/loss"]) for p in run.curve if "train/loss" in p]
        if losses:
            loss.plot(*zip(*losses, strict=True), color=colour, marker="o", markersize=3)
    return first


def _final_panel(axis: Axes, rows: list[str], results: dict[str, list[Run]],
                 paper_top1: dict[str, float]) -> None:
    """Ours (mean ± std over the completed seeds, each seed a dot) beside the paper's."""
    positions = range(len(rows))
    values = [[v for run in results[row] if outcome(run) is None
               and (v := run.final("test/top1")) is not None] for row in rows]
    spreads = [Spread(tuple(v)) for v in values]
    axis.barh([p + 0.2 for p in positions], [s.mean if s.n else 0.0 for s in spreads],
              height=0.4, xerr=[s.std or 0.0 for s in spreads], color="tab:blue",
              label="ours: test top-1, mean ± std over seeds (this run's data)")
    for position, seeds in zip(positions, values, strict=True):
        axis.plot(seeds, [position + 0.2] * len(seeds), "k.", markersize=4)
    axis.barh([p - 0.2 for p in positions], [paper_top1.get(r, 0.0) for r in rows],
              height=0.4, color="tab:gray", label="paper: top-1 on ImageNet (reference)")
    axis.set_yticks(list(positions), rows, fontsize=8)
    axis.set_xlabel("top-1 (%)")
    axis.set_title("final accuracy")
    axis.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12))
