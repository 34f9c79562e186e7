"""The width solver of Table 4: "the widths of networks are adjusted to meet the budget".

For a family that declares its width solved (:class:`~ftbnn_exp.models.SolvedWidth`: the
derived models, with their depth and group number) and a target budget, it returns the
admissible width (every group conv buildable) whose *measured* budget is nearest the target,
with its admissible neighbours. It builds each width with the family's own builder.
The budget prices BOPs at the paper's 1/64 FLOP, or at a rate of the user's (``budget_rate``,
e.g. a CPU's measured one from ``python -m ftbnn_exp.deploy rate``): the width that meets the
same target on that hardware.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ftbnn_exp.complexity.counter import BOPS_PER_FLOP, count_complexity
from ftbnn_exp.errors import InvalidArgument
from ftbnn_exp.models import Family, SolvedWidth
from ftbnn_exp.nn import NonLinearitySchedule
from ftbnn_exp.paper import PaperTable4Row, paper_table4_row

MAX_WIDTH = 2048
TOLERANCE = 0.1
"""How far a solved model's budget may miss its target: Table 4's rows of one budget group lie
within 6 % of the group's budget (84.5–94.7M for ~90M); a model further off is not that
budget's model."""


@dataclass(frozen=True)
class WidthChoice:
    width: int
    budget: float
    target: float
    neighbours: tuple[tuple[int, float], ...]

    paper_row: PaperTable4Row | None = None
    rate: float = BOPS_PER_FLOP
    """BOPs per FLOP of :attr:`budget` and the neighbours' (the paper's 64 unless given)."""

    def describe(self) -> str:
        near = ", ".join(f"width={w}: {b / 1e6:.1f}M" for w, b in self.neighbours)
        source = (f" (Table 4 row ~{self.paper_row.budget}M L{self.paper_row.depth} "
                  f"G{self.paper_row.groups}: its FLOPs + BOPs/64)" if self.paper_row else "")
        priced = (f" at budget_rate={self.rate:g} (FLOPs + BOPs/{self.rate:g})"
                  if self.rate != BOPS_PER_FLOP else "")
        return (f"target {self.target / 1e6:.1f}M{source}{priced} -> width={self.width} "
                f"({self.budget / 1e6:.1f}M); admissible neighbours {near}")


def budget_target(budget_m: float, depth: int, groups: int) -> tuple[float, PaperTable4Row | None]:
    """The budget (M) to solve for. ``budget=90`` and ``budget=135`` name Table 4's budget
    groups ("~90", "~135"): for a depth × groups of the table the target is that row's own
    FLOPs + BOPs/64 (84.5–94.7M and 129.1–140.0M), so the model matches the one the paper
    trained. Any other value, or a combination outside the table, is a literal target."""
    row = paper_table4_row(budget_m, depth, groups)
    return (row.budget_m, row) if row else (budget_m, None)


Arguments = tuple[tuple[str, Any], ...]
"""The arguments a family's width is solved at (``SolvedWidth.arguments``), in order."""


def width_arguments(family: Family, kwargs: Mapping[str, Any]) -> tuple[SolvedWidth, Arguments]:
    """``family``'s width rule and the arguments it builds with: the user's, else the
    builder's defaults. A one-line refusal for a family that does not solve its width."""
    rule = family.solved_width
    if rule is None:
        raise InvalidArgument(f"model family {family.name} has no solved width; give width=N")
    return rule, family.values(kwargs, rule.arguments)


@lru_cache(maxsize=512)
def width_counts(family: Family, arguments: Arguments, width: int, convention: str = "paper",
                 image_size: int = 224, num_classes: int = 1000) -> tuple[int, int]:
    """Measured (FLOPs, BOPs) of ``family`` at ``width`` and ``arguments``, built by its own
    builder with a default schedule at ImageNet size (3 channels): one trace serves every
    rate."""
    given = {"width": width, **dict(arguments), "schedule": NonLinearitySchedule(),
             "in_channels": 3, "num_classes": num_classes, "image_size": image_size}
    model = family.builder(**{k: v for k, v in given.items() if k in family.parameters})
    counted = count_complexity(model, (3, image_size, image_size), convention)
    return counted.flops, counted.bops


def width_budget(family: Family, arguments: Arguments, width: int, convention: str = "paper",
                 image_size: int = 224, num_classes: int = 1000,
                 rate: float = BOPS_PER_FLOP) -> float:
    """Measured budget (FLOPs + BOPs/``rate``; the paper's 64 by default) at ImageNet size."""
    flops, bops = width_counts(family, arguments, width, convention, image_size, num_classes)
    return flops + bops / rate


def admissible_widths(rule: SolvedWidth, arguments: Arguments, limit: int = MAX_WIDTH
                      ) -> list[int]:
    return [w for w in range(1, limit + 1)
            if rule.problem is None or rule.problem(w, **dict(arguments)) is None]


def _quadratic_guess(points: list[tuple[int, float]], target: float) -> float:
    """Width at which the quadratic through three measured (width, budget) points meets the
    target. Only a starting point: every width we answer with is measured."""
    (x0, y0), (x1, y1), (x2, y2) = points
    a = ((y2 - y0) / (x2 - x0) - (y1 - y0) / (x1 - x0)) / (x2 - x1)
    b = (y1 - y0) / (x1 - x0) - a * (x0 + x1)
    c = y0 - a * x0 * x0 - b * x0
    if abs(a) < 1e-12:
        return (target - c) / b
    discriminant = b * b - 4 * a * (c - target)
    if discriminant < 0:  # a target below the curve's reach (a tiny budget): its lowest point
        return -b / (2 * a)
    return (-b + discriminant ** 0.5) / (2 * a)


def _width_guess(candidates: list[int], budget: Callable[[int], float], target: float) -> float:
    """A width near the target: the quadratic through three measured widths near 32, 64 and
    96, or the smallest width where the groups leave fewer than three there."""
    seeds = sorted({min(range(len(candidates)), key=lambda i: abs(candidates[i] - w))
                    for w in (32, 64, 96)})
    if len(seeds) < 3:
        return candidates[0]
    return _quadratic_guess([(candidates[i], budget(i)) for i in seeds], target)


def solve_width(family: Family, kwargs: Mapping[str, Any], budget_m: float,
                convention: str = "paper", image_size: int = 224, num_classes: int = 1000,
                rate: float = BOPS_PER_FLOP) -> WidthChoice:
    """The admissible width of ``family`` (at the arguments of ``kwargs`` its
    :class:`~ftbnn_exp.models.SolvedWidth` names) whose measured budget, FLOPs +
    BOPs/``rate``, is nearest the target of ``budget_m`` (in M, see :func:`budget_target`; at
    another rate than 64 the target stays the same number: the model that costs it on
    hardware of that rate).

    Three measured widths seed a quadratic guess (budget = BOPs/64, which grow with w², plus
    FLOPs, which grow with w); then the widths around the guess are measured, walking on until
    the target is bracketed, and the nearest wins. A target that no admissible width comes
    within :data:`TOLERANCE` of is refused: the model would not be that budget's.
    """
    if budget_m <= 0:
        raise InvalidArgument(f"budget={budget_m} must be a positive number of millions")
    if not rate > 0:
        raise InvalidArgument(f"budget_rate={rate} must be a positive number of BOPs per FLOP")
    rule, arguments = width_arguments(family, kwargs)
    named = dict(arguments)
    target_m, paper_row = (budget_target(budget_m, named["depth"], named["groups"])
                           if rule.table4 else (budget_m, None))
    target = target_m * 1e6
    candidates = admissible_widths(rule, arguments)
    shape = " ".join(f"{k}={v}" for k, v in arguments) + (
        f" budget_rate={rate:g}" if rate != BOPS_PER_FLOP else "")

    def budget(index: int) -> float:
        return width_budget(family, arguments, candidates[index], convention, image_size,
                            num_classes, rate)

    if not candidates:
        raise InvalidArgument(f"{family.name} at {shape} admits no width up to {MAX_WIDTH}; "
                              f"allowed: arguments some width up to {MAX_WIDTH} builds")
    smallest = budget(0)
    if smallest - target > TOLERANCE * target:
        # the smallest target that width still meets, rounded up: the value stated is taken
        lowest = math.ceil(smallest / (1 + TOLERANCE) / 1e5) / 10
        raise InvalidArgument(
            f"budget={budget_m:g} is below the smallest {family.name} model at {shape}: width="
            f"{candidates[0]} measures {smallest / 1e6:.1f}M, and a width is taken within "
            f"{TOLERANCE:.0%} of its budget; allowed: budget >= {lowest:g}")
    guess = _width_guess(candidates, budget, target)
    too_wide = InvalidArgument(f"budget={budget_m:g} needs a width beyond {MAX_WIDTH} at "
                               f"{shape}; allowed: a smaller budget")
    if guess > MAX_WIDTH:  # refused before building a model that wide
        raise too_wide
    index = min(range(len(candidates)), key=lambda i: abs(candidates[i] - guess))
    while index > 0 and budget(index) > target:
        index -= 1
    while index < len(candidates) - 1 and budget(index + 1) <= target:
        index += 1
    last = len(candidates) - 1
    if index == last and target - budget(last) > TOLERANCE * target:
        raise too_wide
    best = min({index, min(index + 1, last)}, key=lambda i: abs(budget(i) - target))
    if abs(budget(best) - target) > TOLERANCE * target:
        raise InvalidArgument(
            f"budget={budget_m:g} cannot be met at {shape}: the nearest admissible widths "
            f"measure {budget(index) / 1e6:.1f}M (width={candidates[index]}) and "
            f"{budget(index + 1) / 1e6:.1f}M (width={candidates[index + 1]}); allowed: "
            f"fewer groups, another budget, or width=N")
    around = [i for i in range(best - 2, best + 3) if 0 <= i < len(candidates) and i != best]
    return WidthChoice(candidates[best], budget(best), target,
                       tuple((candidates[i], budget(i)) for i in around), paper_row, rate)
