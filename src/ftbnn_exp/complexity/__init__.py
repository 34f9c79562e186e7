"""Traced complexity (FLOPs, BOPs, params, budget) and the width solver of Table 4."""

from ftbnn_exp.complexity.counter import (
    CONVENTIONS,
    Complexity,
    LayerCount,
    count_complexity,
)
from ftbnn_exp.complexity.solver import WidthChoice, derived_budget, solve_width

__all__ = [
    "CONVENTIONS",
    "Complexity",
    "LayerCount",
    "WidthChoice",
    "count_complexity",
    "derived_budget",
    "solve_width",
]
