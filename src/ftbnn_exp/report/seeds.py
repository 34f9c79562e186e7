"""A row's spread over its seeds, and which pairs of rows the seeds do not tell apart.

The paper's claims are differences of 1-3 % top-1 between rows; a report that shows one number
per row invites reading an ordering into seed noise. Each row gets mean ± std and n, and each
pair of rows whose difference Welch's t-interval does not resolve is marked.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from scipy import stats

LEVEL = 0.95
"""Confidence of the interval that decides whether two rows differ."""
RULE = ("*not resolved from* lists the rows whose difference from this row the seeds do not "
        f"resolve: Welch's {LEVEL:.0%} t-interval for the difference of the two rows' mean test "
        "top-1 contains 0 (with 2 or 3 seeds a row needs a large gap to be resolved). A row with "
        "fewer than two completed seeds has no spread to judge by and resolves no difference "
        "(`n < 2`); `—`: every other row's difference is resolved.")


@dataclass(frozen=True)
class Spread:
    """One row's values over its completed seeds."""

    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float | None:
        """The sample standard deviation (n - 1); None below two seeds."""
        return statistics.stdev(self.values) if self.n > 1 else None

    def text(self, digits: int = 1) -> str:
        """``mean ± std``, the mean alone for one seed, empty for none."""
        if not self.values:
            return ""
        mean = f"{self.mean:.{digits}f}"
        return mean if self.std is None else f"{mean} ± {self.std:.{digits}f}"


def resolved(a: Spread, b: Spread, level: float = LEVEL) -> bool:
    """Whether the seeds resolve the difference of two rows' means: Welch's t-interval at
    ``level`` for mean(a) - mean(b) excludes 0 (no equal-variance assumption: rows differ in
    how much their seeds scatter). Below two seeds a row has no spread, so nothing is
    resolved; two rows without any scatter differ exactly when their means do."""
    if a.n < 2 or b.n < 2:
        return False
    va, vb = a.std**2 / a.n, b.std**2 / b.n
    gap = abs(a.mean - b.mean)
    if va + vb == 0:
        return gap > 0
    df = (va + vb) ** 2 / (va**2 / (a.n - 1) + vb**2 / (b.n - 1))
    return gap > float(stats.t.ppf(0.5 + level / 2, df)) * math.sqrt(va + vb)


def unresolved(spreads: dict[str, Spread]) -> dict[str, str]:
    """Per row, the rows its difference from is not resolved (:data:`RULE`): their names,
    ``all others``, ``—`` (none), ``n < 2``, or empty for a row without numbers."""
    comparable = [row for row, spread in spreads.items() if spread.n > 1]
    marks = {}
    for row, spread in spreads.items():
        if spread.n < 2:
            marks[row] = "n < 2" if spread.n else ""
            continue
        others = [o for o in comparable if o != row and not resolved(spread, spreads[o])]
        marks[row] = ("—" if not others else "all others"
                      if len(others) == len(comparable) - 1 > 2 else ", ".join(others))
    return marks
