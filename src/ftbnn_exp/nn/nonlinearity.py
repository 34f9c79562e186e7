"""Where the explicit non-linear modules go: the rows of Table 3 as one schedule.

A schedule names the module after the *last block of each stage* and after every *other* block.
"Last block of each stage" is the default rule: for ResNet-18 it is exactly "a ReLU after every
four blocks" (§3, Table 2), and it is the rule that fits the deeper derived models' BOPs (our
reading of Table 4). ``placement="period"`` gives the literal "every ``period``-th block" of §3.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import nn

from ftbnn_exp.nn.activation import FPReLU

ModuleKind = Literal["identity", "relu", "prelu", "fprelu"]
MODULE_KINDS: tuple[str, ...] = ("identity", "relu", "prelu", "fprelu")


def make_nonlinear_module(kind: str, channels: int) -> nn.Module:
    """One explicit non-linear module. PReLU is per channel with PyTorch's init (0.25)."""
    if kind == "identity":
        return nn.Identity()
    if kind == "relu":
        return nn.ReLU(inplace=False)
    if kind == "prelu":
        return nn.PReLU(channels)
    if kind == "fprelu":
        return FPReLU(channels)
    raise ValueError(f"non-linear module '{kind}' is unknown; allowed: {', '.join(MODULE_KINDS)}")


@dataclass(frozen=True)
class NonLinearitySchedule:
    """The explicit non-linear module after each binary block (Table 3 rows)."""

    stage_end: str = "relu"
    other: str = "fprelu"
    placement: Literal["stage_end", "period"] = "stage_end"
    period: int = 4

    def __post_init__(self) -> None:
        for key in ("stage_end", "other"):
            if getattr(self, key) not in MODULE_KINDS:
                raise ValueError(
                    f"nonlinearity.{key}={getattr(self, key)!r} is not allowed; "
                    f"allowed: {', '.join(MODULE_KINDS)}"
                )
        if self.placement not in ("stage_end", "period"):
            raise ValueError(
                f"nonlinearity.placement={self.placement!r} is not allowed; "
                "allowed: stage_end, period"
            )
        if self.period < 1:
            raise ValueError(f"nonlinearity.period must be >= 1, got {self.period}")

    def kind_for(self, block_index: int, is_stage_end: bool) -> str:
        """Module kind after block ``block_index`` (0-based over the whole network)."""
        if self.placement == "period":
            emphasized = (block_index + 1) % self.period == 0
        else:
            emphasized = is_stage_end
        return self.stage_end if emphasized else self.other

    def module_for(self, block_index: int, is_stage_end: bool, channels: int) -> nn.Module:
        return make_nonlinear_module(self.kind_for(block_index, is_stage_end), channels)
