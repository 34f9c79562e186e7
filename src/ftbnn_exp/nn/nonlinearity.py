"""The explicit non-linear modules (registered parts, :mod:`.parts`; FPReLU in
:mod:`.activation`) and the schedule that places them: Table 3's rows.

A schedule places registered modules by rules: ``placed`` after the blocks its ``placement``
picks (under the default placement, the last block of each stage: Table 3's partial rows),
then any number of ``extra`` rules ``{module, placement, <its parameters>}`` checked in order,
and ``elsewhere`` after every block no rule picks; see :mod:`ftbnn_exp.nn.placement`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ftbnn_exp.errors import InvalidArgument
from ftbnn_exp.nn.fused import FusedActivation, clamp
from ftbnn_exp.nn.parts import mean_range, part, register_part
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
register_part("nonlinear", "prelu", label="PReLU", fused=_prelu_fused, decay=True,
              describe=lambda m: (f"PReLU {mean_range(m.weight)}", "1 (PReLU)"),
              make=lambda channels: nn.PReLU(channels))(nn.PReLU)


# IR-Net's explicit non-linearity (Qin et al. 2020, §4.2: "we select Hardtanh as our
# activation function instead of ReLU"), after the stem and every residual add of its
# ImageNet ResNet-18; clamp to [-1, 1], fused as a clamp.
register_part("nonlinear", "hardtanh", label="Hardtanh",
              fused=lambda m: clamp(m.min_val, m.max_val),
              make=lambda channels: nn.Hardtanh())(nn.Hardtanh)


def make_nonlinear_module(kind: str, channels: int) -> nn.Module:
    """A new registered non-linear module ``kind`` of ``channels`` (:mod:`.parts`)."""
    return part("nonlinear", kind, "non-linear module").build(channels)


@dataclass(frozen=True)
class PlacedModule:
    """One rule of a schedule: registered module ``module`` after the blocks ``placement``
    (with ``placement_args``) picks."""

    module: str
    placement: str
    placement_args: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @classmethod
    def from_value(cls, rule: PlacedModule | Mapping[str, Any], key: str) -> PlacedModule:
        """A rule from itself or ``{module: <part>, placement: <name>, <its parameters>}``."""
        if isinstance(rule, PlacedModule):
            return rule
        if not isinstance(rule, Mapping) or "module" not in rule or "placement" not in rule:
            raise InvalidArgument(f"{key}={rule!r} must be {{module: <registered non-linear "
                                  "module>, placement: <registered placement>, <its "
                                  "parameters>}")
        rest = {str(k): v for k, v in rule.items() if k not in ("module", "placement")}
        return cls(str(rule["module"]), str(rule["placement"]), rest)

    def check(self, module_key: str, placement_key: str, prefix: str) -> None:
        part("nonlinear", self.module, module_key)
        check_placement_args(self.placement, self.placement_args, placement_key, prefix)

    def picks(self, position: BlockPosition) -> bool:
        return bool(placement(self.placement)(position, **self.placement_args))

    def to_dict(self) -> dict[str, Any]:
        return {"module": self.module, "placement": self.placement, **self.placement_args}


LEGACY_KEYS = {"stage_end": "placed", "other": "elsewhere"}
"""The schedule's field names in specs written before 0.3 (still read)."""


@dataclass(frozen=True)
class NonLinearitySchedule:
    """The explicit non-linear module after each binary block (Table 3 rows): ``placed`` where
    ``placement`` picks, then the ``extra`` rules in order, ``elsewhere`` after the rest."""

    placed: str = "relu"
    elsewhere: str = "fprelu"
    placement: str = "stage_end"
    placement_args: Mapping[str, Any] = field(default_factory=dict, hash=False)
    extra: tuple[PlacedModule, ...] = field(default=(), hash=False)

    def __post_init__(self) -> None:
        if isinstance(self.extra, (Mapping, str)):
            raise InvalidArgument("nonlinearity.extra must be a list of {module, placement, "
                                  f"<its parameters>}}; got {self.extra!r}")
        object.__setattr__(self, "extra", tuple(
            PlacedModule.from_value(r, f"nonlinearity.extra[{i}]")
            for i, r in enumerate(self.extra)))
        part("nonlinear", self.elsewhere, "nonlinearity.elsewhere")
        self.rules[0].check("nonlinearity.placed", "placement", "placement")
        for i, rule in enumerate(self.extra):
            key = f"nonlinearity.extra[{i}]"
            rule.check(f"{key}.module", f"{key}.placement", key)

    @property
    def rules(self) -> tuple[PlacedModule, ...]:
        """Every rule, in the order they are checked (``placed``'s first)."""
        return (PlacedModule(self.placed, self.placement, dict(self.placement_args)),
                *self.extra)

    def kind_for(self, position: BlockPosition) -> str:
        return next((rule.module for rule in self.rules if rule.picks(position)),
                    self.elsewhere)

    def module_for(self, position: BlockPosition, channels: int) -> nn.Module:
        return make_nonlinear_module(self.kind_for(position), channels)

    def to_dict(self) -> dict[str, Any]:
        return {"placed": self.placed, "elsewhere": self.elsewhere,
                "placement": self.placement, "placement_args": dict(self.placement_args),
                "extra": [rule.to_dict() for rule in self.extra]}

    @classmethod
    def from_value(cls, value: NonLinearitySchedule | Mapping[str, Any] | None
                   ) -> NonLinearitySchedule:
        """A schedule from itself, its ``to_dict`` form (model specs, also those of before
        0.3: :data:`LEGACY_KEYS`), or None (the default)."""
        if isinstance(value, NonLinearitySchedule):
            return value
        values = {LEGACY_KEYS.get(k, k): v for k, v in (value or {}).items()}
        return cls(**{**values, "extra": tuple(values.get("extra") or ())})


IDENTITY = NonLinearitySchedule("identity", "identity")
"""No explicit non-linear module anywhere (Bi-Real Net, Table 3's "none" row)."""
