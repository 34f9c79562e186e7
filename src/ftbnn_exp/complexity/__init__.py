"""Traced complexity (FLOPs, BOPs, params, budget) and the width solver of Table 4."""

from ftbnn_exp.complexity.counter import (
    CONVENTIONS,
    Complexity,
    LayerCount,
    count_complexity,
)
from ftbnn_exp.complexity.solver import WidthChoice, solve_width, width_budget

__all__ = [
    "CONVENTIONS",
    "Complexity",
    "LayerCount",
    "WidthChoice",
    "count_complexity",
    "solve_width",
    "width_budget",
]
