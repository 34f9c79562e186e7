"""The explicit non-linear modules and the schedule that places them: Table 3's rows.

A schedule names two modules, the one at the blocks its placement picks (``stage_end``: after
the last block of each stage under the default placement) and the one after every ``other``
block; see :mod:`ftbnn_exp.nn.placement` for the placements.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn

from ftbnn_exp.errors import InvalidArgument
from ftbnn_exp.nn.activation import FPReLU
from ftbnn_exp.nn.placement import BlockPosition, check_placement_args, placement

NONLINEAR_MODULES: dict[str, Callable[[int], nn.Module]] = {
    "identity": lambda channels: nn.Identity(),
    "relu": lambda channels: nn.ReLU(),
    # per channel, PyTorch's init (0.25)
    "prelu": nn.PReLU,
    # both slopes start at 1 (§2.1)
    "fprelu": FPReLU,
}
"""Module name → factory of ``channels``: the one place the non-linear modules are made."""


def make_nonlinear_module(kind: str, channels: int) -> nn.Module:
    if kind not in NONLINEAR_MODULES:
        raise InvalidArgument(f"non-linear module '{kind}' is unknown; allowed: "
                              f"{', '.join(NONLINEAR_MODULES)}")
    return NONLINEAR_MODULES[kind](channels)


@dataclass(frozen=True)
class NonLinearitySchedule:
    """The explicit non-linear module after each binary block (Table 3 rows)."""

    stage_end: str = "relu"
    other: str = "fprelu"
    placement: str = "stage_end"
    placement_args: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        for key in ("stage_end", "other"):
            if getattr(self, key) not in NONLINEAR_MODULES:
                raise InvalidArgument(f"nonlinearity.{key}={getattr(self, key)!r} is not "
                                      f"allowed; allowed: {', '.join(NONLINEAR_MODULES)}")
        check_placement_args(self.placement, self.placement_args)

    def kind_for(self, position: BlockPosition) -> str:
        emphasised = placement(self.placement)(position, **self.placement_args)
        return self.stage_end if emphasised else self.other

    def module_for(self, position: BlockPosition, channels: int) -> nn.Module:
        return make_nonlinear_module(self.kind_for(position), channels)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "placement_args": dict(self.placement_args)}

    @classmethod
    def from_value(cls, value: NonLinearitySchedule | Mapping[str, Any] | None
                   ) -> NonLinearitySchedule:
        """A schedule from itself, its ``to_dict`` form (model specs), or None (the default)."""
        if isinstance(value, NonLinearitySchedule):
            return value
        return cls(**(value or {}))


IDENTITY = NonLinearitySchedule("identity", "identity")
"""No explicit non-linear module anywhere (Bi-Real Net, Table 3's "none" row)."""
