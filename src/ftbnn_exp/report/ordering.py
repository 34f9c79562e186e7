"""Our ordering of a table's rows against the paper's.

Our runs are not the paper's (other data, fewer epochs), so our top-1 and the paper's ImageNet
top-1 are not comparable as numbers; what a reproduction can check is the paper's claims, which
are orderings and differences between rows (Section 4.2 and Table 3: each step of the ablation
gains over the one before; Table 1: FTBNN against the methods with more strategies). Two
measures do that: the Spearman rank correlation of our top-1 with the paper's over the rows
(1: the same ordering, -1: the reverse), and each row's gain over the table's baseline row,
ours and the paper's side by side.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

from scipy import stats

from ftbnn_exp.artifacts import Metric
from ftbnn_exp.paper import PAPER_TABLE1, PAPER_TABLE3, PAPER_TABLE4
from ftbnn_exp.report.runs import Run
from ftbnn_exp.report.seeds import Spread
from ftbnn_exp.report.setting import caution
from ftbnn_exp.report.tables import outcome

BASELINE_ROW = {"table1": "ftbnn", "table3": "baseline", "table4": None}
"""The row each table's gains are measured from: Table 3's baseline (Section 4.2, the model
every ablation row changes one thing of); in Table 1 FTBNN, the same model, against the other
methods. Table 4 has none: its rows are budgets and shapes, not changes to one model."""

PAPER_LABEL = {"table1": "paper top-1 (ImageNet)", "table3": "paper top-1 (ImageNet)",
               "table4": "paper val top-1 (ImageNet)"}
"""What the paper's value of each table is (Table 4 gives train and val top-1)."""

ROW_ORDER = {"table1": [r.row for r in PAPER_TABLE1], "table3": [r.row for r in PAPER_TABLE3],
             "table4": [r.key for r in PAPER_TABLE4]}
"""Each table's rows in the paper's order."""

MIN_ROWS = 3
"""Rows with both values a rank correlation needs to say anything (two always give ±1)."""


def our_top1(runs: list[Run]) -> float | None:
    """A row's mean test top-1 over its completed seeds (the table's cell), None if none."""
    spread = Spread(tuple(v for run in runs if outcome(run) is None
                          and (v := run.final(Metric.TEST_TOP1)) is not None))
    return spread.mean if spread.n else None


@dataclass(frozen=True)
class Ordering:
    """A table's rows in the paper's order with our mean top-1 and the paper's."""

    rows: tuple[str, ...]
    ours: Mapping[str, float]
    paper: Mapping[str, float]
    baseline: str | None
    paper_label: str = "paper top-1 (ImageNet)"
    caution: str | None = None
    """Said under the rank agreement when the runs are far shorter than the paper's."""

    @property
    def paired(self) -> list[str]:
        """The rows with both values, in the paper's order: those the correlation is over."""
        return [row for row in self.rows if row in self.ours and row in self.paper]

    def spearman(self) -> tuple[float, float] | None:
        """scipy's Spearman ρ and its p-value over :attr:`paired`; None below
        :data:`MIN_ROWS` rows or when one side has a single value (no ranking)."""
        rows = self.paired
        if len(rows) < MIN_ROWS:
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = stats.spearmanr([self.ours[r] for r in rows], [self.paper[r] for r in rows])
        rho, p = float(result.statistic), float(result.pvalue)
        return None if math.isnan(rho) else (rho, p)

    def gain(self, row: str, values: Mapping[str, float]) -> float | None:
        """``row``'s top-1 minus the baseline row's (percentage points), None if either is
        missing."""
        if self.baseline is None or row not in values or self.baseline not in values:
            return None
        return values[row] - values[self.baseline]

    def summary(self) -> str:
        """The rank correlation in words, for ``report.md`` and the figure."""
        found = self.spearman()
        if found is None:
            return (f"Spearman ρ: n/a (needs {MIN_ROWS} rows with our and the paper's top-1 "
                    f"and more than one value on each side; {len(self.paired)} rows have both)")
        return f"Spearman ρ = {found[0]:.3f} (p = {found[1]:.3g}, {len(self.paired)} rows)"

    def markdown(self, title: str) -> str:
        """The section of ``report.md``: the correlation, then each row's values and gains."""
        gains = ("Gain: a row's top-1 minus the baseline row's "
                 f"(`{self.baseline}`), in percentage points; ours on our data, the paper's "
                 "on ImageNet (reference)." if self.baseline else
                 "This table has no baseline row, so no gains.")
        lines = [f"### {title}: our ordering against the paper's", "",
                 f"{self.summary()}: the rank correlation of our mean test top-1 with the "
                 f"{self.paper_label} over the rows with both (scipy.stats.spearmanr; 1: the "
                 "same ordering, -1: the reverse; p from its t-approximation, rough at few "
                 f"rows). {gains}", "", *([self.caution, ""] if self.caution else []),
                 f"| row | ours top-1 | {self.paper_label} | ours gain | paper gain |",
                 "|---|---|---|---|---|"]
        for row in self.rows:
            cells = [_cell(self.ours.get(row), "{:.2f}"), _cell(self.paper.get(row), "{:g}"),
                     _cell(self.gain(row, self.ours), "{:+.2f}"),
                     _cell(self.gain(row, self.paper), "{:+.1f}")]
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
        return "\n".join(lines)


def _cell(value: float | None, form: str) -> str:
    return "" if value is None else form.format(value)


def ordering(table: str, results: Mapping[str, list[Run]],
             paper_top1: Mapping[str, float]) -> Ordering:
    """``table``'s :class:`Ordering` from its rows' result runs and the paper's top-1."""
    ours = {row: value for row, runs in results.items() if (value := our_top1(runs)) is not None}
    return Ordering(tuple(ROW_ORDER[table]), ours, dict(paper_top1), BASELINE_ROW[table],
                    PAPER_LABEL[table], caution(results))
