"""The explicit non-linear modules (registered parts, :mod:`.parts`; FPReLU in
:mod:`.activation`) and the schedule that places them: Table 3's rows.

A schedule names two modules, the one at the blocks its placement picks (``stage_end``: after
the last block of each stage under the default placement) and the one after every ``other``
block; see :mod:`ftbnn_exp.nn.placement` for the placements.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from ftbnn_exp.nn.parts import FusedActivation, mean_range, part, register_part
from ftbnn_exp.nn.placement import BlockPosition, check_placement_args, placement


def _prelu_fused(module: nn.PReLU) -> FusedActivation:
    negative = module.weight.detach().flatten()
    if negative.numel() == 1:
        negative = negative.expand(module.num_parameters or 1)
    return FusedActivation("slopes", negative.contiguous(), torch.ones_like(negative))


register_part("nonlinear", "identity", label="identity",
              fused=lambda m: FusedActivation("none"), make=lambda channels: nn.Identity())(
    nn.Identity)
register_part("nonlinear", "relu", label="ReLU", fused=lambda m: FusedActivation("relu"),
              make=lambda channels: nn.ReLU())(nn.ReLU)
# per channel, PyTorch's init (0.25)
register_part("nonlinear", "prelu", label="PReLU", fused=_prelu_fused,
              describe=lambda m: (f"PReLU {mean_range(m.weight)}", "1 (PReLU)"),
              make=lambda channels: nn.PReLU(channels))(nn.PReLU)


def make_nonlinear_module(kind: str, channels: int) -> nn.Module:
    """A new registered non-linear module ``kind`` of ``channels`` (:mod:`.parts`)."""
    return part("nonlinear", kind, "non-linear module").build(channels)


@dataclass(frozen=True)
class NonLinearitySchedule:
    """The explicit non-linear module after each binary block (Table 3 rows)."""

    stage_end: str = "relu"
    other: str = "fprelu"
    placement: str = "stage_end"
    placement_args: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        for key in ("stage_end", "other"):
            part("nonlinear", getattr(self, key), f"nonlinearity.{key}")
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
