"""The fused runners' registry: how each model family's export runs whole on the C++ kernels.

A family declares its fused runner here, from its own module or a plug-in file, with
:func:`register_runner`: a function from its export (the inference model of
:func:`~ftbnn_exp.deploy.layers.to_inference`) to a :class:`FusedPlan`, the network as the
runner executes it: the stem, then binary units ``binarize → conv → BN (+ shortcut) →
non-linear module`` in order, then the head. The family knows its own blocks; the runner
(:class:`ftbnn_exp.deploy.fast.FusedNetwork`) knows only plans, so nothing under ``deploy/``
imports a model or tests a class of one. A plan function refuses an export it has no plan for
with a one-line :class:`~ftbnn_exp.errors.InvalidArgument`; the fused runner then falls back
to the binary convs alone and says why. This module imports nothing but torch, so a family's
module registers without loading the kernels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor, nn

IDENTITY_SHORTCUT = "identity"
"""A unit's shortcut that is its input itself."""


@dataclass(frozen=True)
class FusedUnit:
    """One binary conv and its output step: ``nonlinear(bn(conv(binarize(x'))) + shortcut)``
    with ``x'`` the unit's input ``x``, or ``[x, x]`` along channels where ``doubled`` (copy and
    paste, Fig. 3). ``shortcut``: None (no residual), :data:`IDENTITY_SHORTCUT` (``x``), or a
    real-valued function of ``x`` (a 1×1 conv shortcut, a pooled copy and paste), run where its
    memory layout gives the reference's bits. ``nonlinear`` None: nothing after the add."""

    binarize: nn.Module
    conv: nn.Module
    bn: nn.Module
    nonlinear: nn.Module | None = None
    shortcut: str | Callable[[Tensor], Tensor] | None = IDENTITY_SHORTCUT
    doubled: bool = False


@dataclass(frozen=True)
class FusedPlan:
    """A network as the fused runner executes it: ``head(units(stem(x)))``; ``stem`` a
    sequence of real-valued layers, ``head`` pooling and the classifier on the last unit's
    output."""

    stem: nn.Module
    units: tuple[FusedUnit, ...]
    head: Callable[[Tensor], Tensor]


PlanFunction = Callable[[nn.Module], FusedPlan]
RUNNERS: dict[str, PlanFunction] = {}
"""Each family's plan function, by family name."""


def register_runner(family: str, replace: bool = False
                    ) -> Callable[[PlanFunction], PlanFunction]:
    """Declare the decorated function as family ``family``'s fused runner (its plan). A family
    that has one from another function is refused in one line unless ``replace`` (the same
    function imported again, a reloaded module's, is the same declaration)."""

    def register(plan: PlanFunction) -> PlanFunction:
        taken = RUNNERS.get(family)
        if taken is not None and not replace and _name(taken) != _name(plan):
            raise ValueError(f"family {family!r} already has a fused runner ({_name(taken)}); "
                             f"register_runner({family!r}, replace=True) replaces it")
        RUNNERS[family] = plan
        return plan

    return register


def _name(function: PlanFunction) -> str:
    return f"{function.__module__}.{function.__qualname__}"


def runner_of(family: str) -> PlanFunction | None:
    """Family ``family``'s plan function, or None: it has no fused runner."""
    return RUNNERS.get(family)
