"""Table 4's complexity columns rebuilt by our counter, beside the paper's (README table)."""

from __future__ import annotations

from dataclasses import dataclass

from ftbnn_exp.complexity import count_complexity, solve_width
from ftbnn_exp.models import derived_ftbnn, family
from ftbnn_exp.nn import NonLinearitySchedule
from ftbnn_exp.paper import PAPER_TABLE4, PaperTable4Row


@dataclass(frozen=True)
class ComplexityComparison:
    paper: PaperTable4Row
    width: int
    flops_m: float
    bops_m: float
    params_m: float
    budget_m: float

    def errors(self) -> dict[str, float]:
        """Relative differences, ours vs the paper's."""
        p = self.paper
        return {"flops": self.flops_m / p.flops_m - 1, "bops": self.bops_m / p.bops_m - 1,
                "params": self.params_m / p.params_m - 1, "budget": self.budget_m / p.budget_m - 1}


def compare_row(paper: PaperTable4Row) -> ComplexityComparison:
    width = solve_width(family("derived_ftbnn"), {"depth": paper.depth, "groups": paper.groups},
                        paper.budget).width
    model = derived_ftbnn(NonLinearitySchedule(), width, paper.depth, paper.groups)
    c = count_complexity(model, (3, 224, 224), "paper")
    return ComplexityComparison(paper, width, c.flops / 1e6, c.bops / 1e6, c.params / 1e6,
                                c.budget / 1e6)


def table4_complexity_markdown(rows: list[ComplexityComparison]) -> str:
    lines = [
        "| budget | layers | G | width | FLOPs (M) ours / paper | BOPs (M) ours / paper "
        "| Params (M) ours / paper | budget (M) ours / paper |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        p, e = r.paper, r.errors()
        lines.append(
            f"| ~{p.budget} | {p.depth} | {p.groups} | {r.width} "
            f"| {r.flops_m:.1f} / {p.flops_m} ({e['flops']:+.1%}) "
            f"| {r.bops_m:.0f} / {p.bops_m:g} ({e['bops']:+.1%}) "
            f"| {r.params_m:.2f} / {p.params_m} ({e['params']:+.1%}) "
            f"| {r.budget_m:.1f} / {p.budget_m:.1f} ({e['budget']:+.1%}) |")
    return "\n".join(lines)


def compare_all() -> list[ComplexityComparison]:
    return [compare_row(row) for row in PAPER_TABLE4]


if __name__ == "__main__":
    print(table4_complexity_markdown(compare_all()))
