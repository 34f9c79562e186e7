"""The paper's published numbers, as data. Reference values only, never our results.

Sources: Table 1 (methods on ResNet-18: the training strategies each used and ImageNet top-1
in %), Table 3 (ablation, ImageNet top-1/top-5 in %), Table 4 left (derived models: budget
group in M, layers, groups, FLOPs in M, BOPs in M, Params in M, top-1 train and val in %).
A library of its own: the width solver (budget targets) and the reports both read it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PaperTable1Row:
    row: str
    description: str
    strategies: frozenset[str]
    """Of Table 1's KD, GA, MS and Scaling, those the method used."""
    top1: float | None
    """ImageNet top-1 in % as the paper reports it (Table 1, or Table 4 right where the method
    is only there); None: the paper has no number for it."""
    budget_m: float | None = None
    """Table 4 right's budget (FLOPs + BOPs/64, in M): ~163 for the 1/1 methods on ResNet-18,
    183 for Real-to-Bin; None where it gives none."""
    configured: bool = True
    """False: a row of the paper's Table 1 we have no config for (the report says why)."""


STRATEGIES = ("KD", "GA", "MS", "Scaling")
"""Table 1's columns: knowledge distillation, gradient approximation, multiple training steps,
explicit scaling factors."""

RESNET18_BUDGET_M = 163.0
"""Table 4 right: "~163" M for the binary (1/1) ResNet-18 methods (XNOR-Net, Bi-Real Net-18,
XNOR-Net++, CI-BCNN, BONN, IR-Net, FTBNN)."""

PAPER_TABLE1: tuple[PaperTable1Row, ...] = (
    PaperTable1Row("bnn", "BNN", frozenset(), 42.2, RESNET18_BUDGET_M),
    PaperTable1Row("xnor", "XNOR-Net", frozenset({"MS", "Scaling"}), 51.2, RESNET18_BUDGET_M),
    PaperTable1Row("xnorpp", "XNOR-Net++", frozenset({"Scaling"}), 57.1, RESNET18_BUDGET_M),
    PaperTable1Row("bireal", "Bi-Real Net (B) †", frozenset({"GA", "Scaling"}), 56.4,
                   RESNET18_BUDGET_M),
    PaperTable1Row("bireal_a", "Bi-Real Net (A) † (not configured: its real-valued "
                   "pretraining with clip(-1, 1) activations)", frozenset({"GA", "MS", "Scaling"}),
                   56.4, RESNET18_BUDGET_M, configured=False),
    PaperTable1Row("irnet", "IR-Net †", frozenset({"GA", "Scaling"}), 58.1, RESNET18_BUDGET_M),
    PaperTable1Row("binaryduo", "BinaryDuo † (not configured: its coupled ternary model)",
                   frozenset({"GA", "MS"}), 60.9, configured=False),
    PaperTable1Row("real2bin", "Real-to-Bin baseline †", frozenset({"KD", "MS", "Scaling"}),
                   60.9),
    PaperTable1Row("ftbnn", "FTBNN †", frozenset(), 60.2, RESNET18_BUDGET_M),
    PaperTable1Row("ftbnn_kd", "FTBNN † (KD + MS)", frozenset({"KD", "MS"}), 63.2,
                   RESNET18_BUDGET_M),
    PaperTable1Row("real2bin_full", "Real-to-Bin, full method † (Table 4 right, not in "
                   "Table 1)", frozenset({"KD", "MS", "Scaling"}), 65.4, 183.0),
    PaperTable1Row("reactnet", "ReActNet's RSign and RPReLU † (not in the paper)", frozenset(),
                   None),
)
"""Table 1 (ResNet-18, ImageNet) in its order, then the methods beyond it: Real-to-Bin's full
method (Table 4 right) and ReActNet's parts (no reference values)."""


@dataclass(frozen=True)
class PaperTable3Row:
    row: str
    description: str
    top1: float
    top5: float


PAPER_TABLE3: tuple[PaperTable3Row, ...] = (
    PaperTable3Row("bireal", "Bi-Real Net with our naive training scheme", 52.3, 75.9),
    PaperTable3Row("none", "No explicit non-linear modules", 52.5, 76.0),
    PaperTable3Row("prelu", "All configured with PReLU", 58.9, 81.1),
    PaperTable3Row("fprelu", "All configured with FPReLU", 59.3, 81.3),
    PaperTable3Row("relu", "All configured with ReLU (lr=0.00015)", 45.9, 70.5),
    PaperTable3Row("relu_partial", "Partially configured with ReLU", 59.6, 81.4),
    PaperTable3Row("relu_partial_prelu", "Partially ReLU & PReLU in others", 59.7, 81.6),
    PaperTable3Row("baseline", "Baseline (partially ReLU & FPReLU in others)", 60.2, 82.0),
    PaperTable3Row("resnet18_fp", "Full-precision ResNet-18", 69.8, 89.2),
)
"""Table 3. (Bi-Real Net as reported by Liu et al. 2018: 56.4 / 79.5.)"""


@dataclass(frozen=True)
class PaperTable4Row:
    budget: int
    depth: int
    groups: int
    flops_m: float
    bops_m: float
    params_m: float
    top1_train: float
    top1_val: float

    @property
    def key(self) -> str:
        return f"b{self.budget}_l{self.depth}_g{self.groups}"

    @property
    def budget_m(self) -> float:
        """FLOPs + BOPs/64 of this row, in M (Fig. 3 right)."""
        return self.flops_m + self.bops_m / 64


def _rows(budget: int, text: str) -> tuple[PaperTable4Row, ...]:
    rows = []
    for line in text.strip().splitlines():
        depth, groups, flops, bops, params, train, val = line.split()
        rows.append(PaperTable4Row(budget, int(depth), int(groups), float(flops), float(bops),
                                   float(params), float(train), float(val)))
    return tuple(rows)


PAPER_TABLE4: tuple[PaperTable4Row, ...] = _rows(90, """
18 1 19.0 4516 1.66 61.0 61.9
18 3 23.1 4580 2.06 61.6 61.9
18 5 25.8 4301 2.28 62.2 61.9
18 8 28.7 3988 2.55 61.5 61.1
34 1 19.3 4176 1.32 58.8 61.0
34 3 23.8 4005 1.59 60.6 62.0
34 5 27.0 3829 1.79 61.8 62.5
34 8 30.1 3577 1.97 61.9 62.0
""") + _rows(135, """
18 1 21.1 7399 2.42 66.1 64.8
18 3 26.2 7285 2.88 66.6 64.5
18 5 29.9 7031 3.22 67.2 64.2
18 8 34.0 6717 3.60 66.4 63.4
34 1 21.6 6994 1.99 63.5 64.5
34 3 27.4 6639 2.31 65.8 65.3
34 5 31.5 6412 2.56 66.8 65.5
34 8 36.0 6090 2.83 67.3 65.0
44 1 22.1 6847 2.07 62.4 63.3
44 3 28.5 6512 2.33 65.3 64.8
44 5 32.9 6251 2.55 66.4 65.3
44 8 37.5 5947 2.76 66.9 65.3
""")
"""Table 4 left: 20 derived models."""


def paper_table4_row(budget: float | None, depth: int, groups: int) -> PaperTable4Row | None:
    for row in PAPER_TABLE4:
        if row.budget == budget and row.depth == depth and row.groups == groups:
            return row
    return None
