"""Where a schedule's non-linear modules go: placement policies and their registry (§3).

A placement is a function of a block's position (and its own keyword parameters) that says
whether that block gets a schedule rule's module (``nonlinearity.placed``, e.g. the ReLU of
Table 3's partial rows, or an ``extra`` rule's) or ``elsewhere``'s. A new placement is one
registered function plus one ``conf/placement/<name>.yaml``; the models and the Table 2 report
ask the same registry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ftbnn_exp.errors import InvalidArgument
from ftbnn_exp.registries import check_free
from ftbnn_exp.validation import keyword_arguments


@dataclass(frozen=True)
class BlockPosition:
    """A binary block's place in the network: ``index`` counts blocks over the whole network
    (0-based), ``index_in_stage`` within its stage of ``stage_length`` blocks."""

    index: int
    stage: int
    index_in_stage: int
    stage_length: int

    @property
    def is_stage_end(self) -> bool:
        return self.index_in_stage == self.stage_length - 1


Placement = Callable[..., bool]
PLACEMENTS: dict[str, Placement] = {}


def register_placement(name: str, replace: bool = False) -> Callable[[Placement], Placement]:
    """Register ``fn(position, **params) -> bool`` as ``placement=<name>``; a taken name is
    refused in one line unless ``replace=True`` (:mod:`ftbnn_exp.registries`)."""

    def register(fn: Placement) -> Placement:
        check_free("placement registry", name, PLACEMENTS.get(name), fn, replace,
                   "register_placement(..., replace=True)")
        PLACEMENTS[name] = fn
        return fn

    return register


def placement(name: str, key: str = "placement") -> Placement:
    if name not in PLACEMENTS:
        raise InvalidArgument(f"{key}={name} is not registered; allowed: "
                              f"{', '.join(sorted(PLACEMENTS))}")
    return PLACEMENTS[name]


def check_placement_args(name: str, args: Mapping[str, Any], key: str = "placement",
                         prefix: str = "placement") -> None:
    """A one-line error naming ``key`` if no placement ``name`` is registered, or the first
    parameter (``<prefix>.<parameter>``) it does not take."""
    parameters = keyword_arguments(placement(name, key))[0][1:]  # less the position
    for arg in args:
        if arg not in parameters:
            allowed = ", ".join(parameters) or "none"
            raise InvalidArgument(f"{prefix}.{arg} is not a parameter of placement={name}; "
                                  f"allowed: {allowed}")


@register_placement("stage_end")
def stage_end(position: BlockPosition) -> bool:
    """After the last block of each stage: for ResNet-18, exactly "a ReLU after every four
    blocks" (§3, Table 2), and the rule that fits the deeper derived models' BOPs (Table 4)."""
    return position.is_stage_end


@register_placement("period")
def period(position: BlockPosition, period: int = 4) -> bool:
    """After every ``period``-th block over the whole network: §3's literal wording."""
    if period < 1:
        raise InvalidArgument(f"placement.period={period} must be positive")
    return (position.index + 1) % period == 0
