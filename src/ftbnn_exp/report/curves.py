"""Training curves in the style of Fig. 1 (right) and Fig. 5, and our ordering of the rows
against the paper's: written as PNG and as SVG (a vector copy) side by side.

Top: validation top-1 and training loss per epoch, a colour and marker per row (in the table's
order, the paper's), a line per seed; after a single epoch a dot per seed over a bar per row
instead (a curve of one point says nothing). The loss axis is logarithmic when the rows' losses
span more than :data:`LOG_SPAN` (distillation rows sit near 300, plain ones near 1).
Bottom (tables only): our mean top-1 against the paper's
with the Spearman rank correlation, and each row's gain over the baseline row, ours and the
paper's in panels of their own: our data and ImageNet are not one scale (ordering.py).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from ftbnn_exp.artifacts import Metric
from ftbnn_exp.report.ordering import Ordering
from ftbnn_exp.report.runs import Run
from ftbnn_exp.report.setting import num_classes

MARKERS = ("o", "s", "^", "D", "v", "P", "X")
"""Seven markers beside tab10's ten colours: (colour, marker) differs for the first 70 rows,
so Table 4's 20 rows stay distinct where colours repeat."""
MARKS = 12
"""About this many markers on a long line (every epoch's would hide a 60-epoch curve)."""
Style = tuple[tuple[float, ...], str]
LOG_SPAN = 20
"""Largest / smallest loss above which the loss axis is logarithmic."""
LABEL_GAP = 0.06
"""Least vertical distance between two labels of the ordering scatter, in axis heights."""


def row_styles(rows: list[str]) -> dict[str, Style]:
    """A distinct tab10 colour and marker per row, by its place in the table's order."""
    colours = plt.get_cmap("tab10")
    return {row: (colours(i % 10), MARKERS[i % len(MARKERS)]) for i, row in enumerate(rows)}


def curves_figure(results: dict[str, list[Run]], title: str,
                  order: Ordering | None = None) -> tuple[Figure, dict[str, Axes]]:
    """The figure and its panels by name: ``accuracy``, ``loss``; with ``order`` also
    ``rank`` and, where the table has a baseline row, ``ours`` and ``paper`` (else a
    ``note``). ``results`` is taken in its own order, the table's; a row's colour and marker
    follow its place in the paper's table, so it keeps them whichever rows ran."""
    rows = list(results)
    styles = row_styles(list(dict.fromkeys([*(order.rows if order else ()), *rows])))
    top = ["accuracy"] * 3 + ["loss"] * 3
    bottom = (["rank"] * 2 + ["ours"] * 2 + ["paper"] * 2 if order and order.baseline
              else ["rank"] * 3 + ["note"] * 3)
    figure, axes = plt.subplot_mosaic([top, bottom] if order else [top],
                                      figsize=(17, 11) if order else (14, 5))
    if last_epoch(results) <= 1:
        lines = _one_epoch_bars(axes["accuracy"], axes["loss"], results, styles)
    else:
        lines = [line for row in rows
                 if (line := _row_curves(axes["accuracy"], axes["loss"], row, results[row],
                                         styles[row]))]
        _epoch_axes(axes["accuracy"], axes["loss"], results)
    _loss_scale(axes["loss"], results)
    _chance_line(axes["accuracy"], results)
    if order:
        _ordering_panels(axes, order, styles)
    if lines:  # runs that logged no epoch (failed at once) have no curve to name
        axes["accuracy"].legend(handles=lines, labels=[line.get_label() for line in lines],
                                title="row" if order else "run", loc="best", fontsize=7,
                                ncols=2 if len(lines) > 6 else 1, framealpha=0.8)
    figure.suptitle(title, wrap=True)
    figure.tight_layout(rect=(0, 0, 1, 0.95))
    return figure, dict(axes)


def last_epoch(results: dict[str, list[Run]]) -> int:
    """The last epoch any run logged, counted from 1 (0: none)."""
    return max((epoch for runs in results.values() for run in runs
                for epoch, _ in _points(run, Metric.VAL_TOP1) + _points(run, Metric.TRAIN_LOSS)),
               default=0)


def several_seeds(results: dict[str, list[Run]]) -> bool:
    return any(len(runs) > 1 for runs in results.values())


def _chance_line(accuracy: Axes, results: dict[str, list[Run]]) -> None:
    """Top-1 of a guess, 100 / classes %, dashed: rows on it learned nothing yet."""
    classes = {c for runs in results.values() for run in runs if (c := num_classes(run))}
    if len(classes) == 1:
        chance = 100 / classes.pop()
        accuracy.axhline(chance, color="gray", linestyle="--", linewidth=0.8)
        accuracy.annotate(f"chance ({chance:g} %)", (0, chance), xycoords=("axes fraction",
                          "data"), xytext=(3, 2), textcoords="offset points", fontsize=7,
                          color="gray")


def _loss_scale(loss: Axes, results: dict[str, list[Run]]) -> None:
    """Logarithmic when the losses span more than :data:`LOG_SPAN` (all positive)."""
    values = [v for runs in results.values() for run in runs
              for _, v in _points(run, Metric.TRAIN_LOSS)]
    if values and min(values) > 0 and max(values) / min(values) > LOG_SPAN:
        loss.set_yscale("log")
        loss.set_ylabel("train loss (log scale)")


def _one_epoch_bars(accuracy: Axes, loss: Axes, results: dict[str, list[Run]],
                    styles: dict[str, Style]) -> list[Line2D]:
    """After one epoch: a bar per row at its mean, a dot per seed, for val top-1 and the
    training loss."""
    rows = list(results)
    handles = []
    for axis, key, name in ((accuracy, Metric.VAL_TOP1, "val top-1 (%)"),
                            (loss, Metric.TRAIN_LOSS, "train loss")):
        for x, row in enumerate(rows):
            colour, marker = styles[row]
            values = [v for run in results[row] for _, v in _points(run, key)]
            if not values:
                continue
            axis.bar(x, sum(values) / len(values), color=colour, alpha=0.35, width=0.7)
            (dots,) = axis.plot([x] * len(values), values, color=colour, marker=marker,
                                linestyle="none", markersize=6, label=row)
            if axis is accuracy:
                handles.append(dots)
        axis.set_xticks(range(len(rows)), rows, rotation=45, ha="right", fontsize=8)
        axis.set_ylabel(name)
        seeds = " (a dot per seed)" if several_seeds(results) else ""
        axis.set_title(f"{name.split(' (')[0]} after 1 epoch{seeds}")
        axis.grid(alpha=0.3, axis="y")
    return handles


def _ordering_panels(axes: dict[str, Axes], order: Ordering, styles: dict[str, Style]) -> None:
    _rank_panel(axes["rank"], order, styles)
    if order.baseline:
        _gain_panels(axes["ours"], axes["paper"], order, styles)
        return
    axes["note"].set_axis_off()
    axes["note"].text(0.05, 0.5, "no gains: this table has no baseline row", fontsize=10,
                      color="gray", va="center")


def plot_curves(results: dict[str, list[Run]], title: str, path: Path,
                order: Ordering | None = None) -> list[Path]:
    """:func:`curves_figure` written to ``path`` (PNG) and beside it as SVG."""
    figure, _ = curves_figure(results, title, order)
    written = [path, path.with_suffix(".svg")]
    try:
        figure.savefig(written[0], dpi=120)
        figure.savefig(written[1])
    finally:
        plt.close(figure)
    return written


def _points(run: Run, key: str) -> list[tuple[int, float]]:
    """``key`` per epoch, the epoch counted from 1 (after the first epoch: 1)."""
    return [(int(p["epoch"]) + 1, p[key]) for p in run.curve if key in p and "epoch" in p]


def _row_curves(accuracy: Axes, loss: Axes, row: str, seeds: list[Run],
                style: Style) -> Line2D | None:
    """One row's seeds in its colour and marker; the first line stands for it in the legend.
    A single epoch is one marker, so a 1-epoch run shows."""
    colour, marker = style
    first = None
    for run in seeds:
        for axis, key in ((accuracy, Metric.VAL_TOP1), (loss, Metric.TRAIN_LOSS)):
            points = _points(run, key)
            if not points:
                continue
            (line,) = axis.plot(*zip(*points, strict=True), color=colour, marker=marker,
                                markersize=6, markevery=max(1, len(points) // MARKS),
                                linewidth=1.5, label=row)
            first = first or line
    return first


def _epoch_axes(accuracy: Axes, loss: Axes, results: dict[str, list[Run]]) -> None:
    """Epochs from 0 to the last one run, integer ticks, the same range on both panels."""
    last = last_epoch(results) or 1
    seeds = " (a line per seed)" if several_seeds(results) else ""
    for axis, name, what in ((accuracy, "val top-1 (%)", f"validation top-1{seeds}"),
                             (loss, "train loss", "training loss")):
        axis.set_xlim(0, last + max(0.5, 0.02 * last))
        axis.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))
        axis.set_xlabel("epoch")
        axis.set_ylabel(name)
        axis.set_title(what)
        axis.grid(alpha=0.3)


def _rank_panel(axis: Axes, order: Ordering, styles: dict[str, Style]) -> None:
    """Each row with both values: the paper's top-1 across, ours up; a rising cloud is the
    paper's ordering."""
    for row in order.paired:
        colour, marker = styles[row]
        axis.plot(order.paper[row], order.ours[row], marker=marker, color=colour, markersize=8,
                  linestyle="none")
    axis.margins(x=0.25, y=0.2)  # room for the names beside the points
    _spread_labels(axis, [(row, order.paper[row], order.ours[row]) for row in order.paired])
    axis.set_xlabel(f"{order.paper_label}, reference")
    axis.set_ylabel("ours: mean test top-1 (%)")
    axis.set_title(f"ordering: {order.summary()}", fontsize=10)
    axis.grid(alpha=0.3)


def _gain_panels(ours: Axes, paper: Axes, order: Ordering, styles: dict[str, Style]) -> None:
    """Each row's gain over the baseline row, ours and the paper's in two panels sharing the
    rows (the paper's order, top down), each with its own scale."""
    rows = [r for r in order.rows if order.gain(r, order.ours) is not None
            or order.gain(r, order.paper) is not None]
    if not rows:
        ours.set_title("no gains: the baseline row has no result")
        paper.set_axis_off()
        return
    for axis, values, digits, what in (
            (ours, order.ours, 2, "ours: gain over baseline (pp, our data)"),
            (paper, order.paper, 1, "paper: gain over baseline (pp, ImageNet, reference)")):
        for y, row in enumerate(rows):
            gain = order.gain(row, values)
            if gain is None:
                axis.text(0, y, " no result", va="center", fontsize=7, color="gray")
                continue
            axis.barh(y, gain, color=styles[row][0], height=0.6)
            axis.text(gain, y, f" {gain:+.{digits}f} ", va="center", fontsize=7,
                      ha="left" if gain >= 0 else "right")
        axis.axvline(0, color="black", linewidth=0.8)
        axis.set_yticks(range(len(rows)),
                        [f"{r} (baseline)" if r == order.baseline else r for r in rows]
                        if axis is ours else [""] * len(rows), fontsize=8)
        axis.set_ylim(len(rows) - 0.5, -0.5)
        axis.margins(x=0.25)
        axis.set_xlabel("top-1 gain (percentage points)")
        axis.set_title(what, fontsize=10)
        axis.grid(alpha=0.3, axis="x")


def _spread_labels(axis: Axes, points: list[tuple[str, float, float]]) -> None:
    """Each point's name to its right, moved up where it would overlap the one below
    (:data:`LABEL_GAP` apart), with a thin line to its point when moved."""
    if not points:
        return
    low, high = axis.get_ylim()
    left, right = axis.get_xlim()
    gap, shift = LABEL_GAP * (high - low), 0.03 * (right - left)
    placed: float | None = None
    for name, x, y in sorted(points, key=lambda p: p[2]):
        label_y = y if placed is None else max(y, placed + gap)
        placed = label_y
        moved = abs(label_y - y) > 1e-9 * (high - low)
        axis.annotate(name, (x, y), xytext=(x + shift, label_y), textcoords="data", fontsize=7,
                      va="center", arrowprops={"arrowstyle": "-", "linewidth": 0.5,
                                               "color": "gray"} if moved else None)
    axis.set_ylim(low, max(high, placed + gap))
