"""Training curves in the style of Fig. 1 (right) and Fig. 5, and our ordering of the rows
against the paper's: written as PNG and as SVG (a vector copy) side by side.

Top: validation top-1 and training loss per epoch, a colour and marker per row (in the table's
order, the paper's), a line per seed. Bottom (tables only): our mean top-1 against the paper's
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

from ftbnn_exp.report.ordering import Ordering
from ftbnn_exp.report.runs import Run

MARKERS = ("o", "s", "^", "D", "v", "P", "X")
"""Seven markers beside tab10's ten colours: (colour, marker) differs for the first 70 rows,
so Table 4's 20 rows stay distinct where colours repeat."""
MARKS = 12
"""About this many markers on a long line (every epoch's would hide a 60-epoch curve)."""
Style = tuple[tuple[float, ...], str]


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
    lines = [line for row in rows
             if (line := _row_curves(axes["accuracy"], axes["loss"], row, results[row],
                                     styles[row]))]
    _epoch_axes(axes["accuracy"], axes["loss"], results)
    if order:
        _ordering_panels(axes, order, styles)
    if lines:  # runs that logged no epoch (failed at once) have no curve to name
        figure.legend(handles=lines, labels=[line.get_label() for line in lines],
                      title="row" if order else "run", loc="center right", fontsize=8)
    figure.suptitle(title)
    figure.tight_layout(rect=(0, 0, 0.87 if order else 0.9, 0.97))
    return figure, dict(axes)


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
        for axis, key in ((accuracy, "val/top1"), (loss, "train/loss")):
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
    last = max((epoch for runs in results.values() for run in runs
                for epoch, _ in _points(run, "val/top1") + _points(run, "train/loss")),
               default=1)
    for axis, name, what in ((accuracy, "val top-1 (%)", "validation top-1 (a line per seed)"),
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
        axis.annotate(row, (order.paper[row], order.ours[row]), fontsize=7,
                      xytext=(4, 3), textcoords="offset points")
    axis.margins(0.15)  # room for the names beside the points
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
