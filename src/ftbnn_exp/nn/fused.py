"""A non-linear module's form in the deploy output step, composed of per-channel primitives.

The fused runner computes each binary block's output step as ``z·scale + bias + residual``
(the folded BN and the shortcut) followed by the non-linear module's steps, in order. A module
declares those steps in its registered part's ``fused`` trait (:mod:`.parts`) as one
:class:`FusedActivation` or a tuple of them, from these primitives, each per channel (a value
per channel, or one value for all):

- ``none``: nothing; ``relu``: ``max(y, 0)``;
- ``scale(v)``: ``y · v``; ``shift(v)``: ``y + v``;
- ``slopes(negative, positive)``: ``y · positive`` where ``y > 0``, ``y · negative``
  elsewhere (PReLU, FPReLU);
- ``clamp(low, high)``: ``y`` clamped to ``[low, high]`` (Hardtanh).

ReActNet's RPReLU, ``PReLU_β(x − γ) + ζ``, is ``(shift(−γ), slopes(β, 1), shift(ζ))``. Each
primitive rounds as the PyTorch expression it names, so a form whose steps are the module's
own operations in its own order is exact: the deploy tests compare the fused runner with the
module's own forward bit for bit. A step the C++ kernel has no native form for runs in PyTorch
after it (:mod:`ftbnn_exp.deploy.fast`).
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Real

import torch
from torch import Tensor

from ftbnn_exp.errors import InvalidArgument

PRIMITIVES: dict[str, tuple[str, ...]] = {
    "none": (),
    "relu": (),
    "scale": ("values",),
    "shift": ("values",),
    "slopes": ("negative", "positive"),
    "clamp": ("low", "high"),
}
"""Each primitive and its per-channel parameters, in order."""


@dataclass(frozen=True, init=False, eq=False)
class FusedActivation:
    """One primitive of the output step (module docstring): ``kind`` and its parameters as
    flat float32 tensors (one value, or one per channel). Checked here, at construction: an
    unknown kind or a wrong number of parameters is a one-line :class:`InvalidArgument`
    naming what is allowed, which the fused runner reports as its refusal."""

    kind: str
    parameters: tuple[Tensor, ...]

    def __init__(self, kind: str, *parameters: Tensor | float) -> None:
        if kind not in PRIMITIVES:
            raise InvalidArgument(f"fused activation kind {kind!r} is not a primitive; allowed: "
                                  f"{', '.join(PRIMITIVES)}")
        names = PRIMITIVES[kind]
        if len(parameters) != len(names):
            raise InvalidArgument(f"fused activation {kind!r} takes {len(names)} parameter(s) "
                                  f"({', '.join(names) or 'none'}), not {len(parameters)}")
        values = []
        for name, value in zip(names, parameters, strict=True):
            if not isinstance(value, Tensor | Real) or isinstance(value, bool):
                raise InvalidArgument(f"fused activation {kind!r}: {name} is a "
                                      f"{type(value).__name__}; allowed: a tensor or a number")
            values.append(torch.as_tensor(value).detach().to(torch.float32).flatten()
                          .contiguous())
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "parameters", tuple(values))


def scale(values: Tensor | float) -> FusedActivation:
    return FusedActivation("scale", values)


def shift(values: Tensor | float) -> FusedActivation:
    return FusedActivation("shift", values)


def slopes(negative: Tensor | float, positive: Tensor | float) -> FusedActivation:
    return FusedActivation("slopes", negative, positive)


def clamp(low: Tensor | float, high: Tensor | float) -> FusedActivation:
    return FusedActivation("clamp", low, high)


def fused_steps(form: object, where: str) -> tuple[FusedActivation, ...]:
    """A ``fused`` trait's answer as its steps in order, ``none`` left out; a one-line
    refusal naming ``where`` for anything but a :class:`FusedActivation` or a tuple or list
    of them."""
    steps = tuple(form) if isinstance(form, tuple | list) else (form,)
    for step in steps:
        if not isinstance(step, FusedActivation):
            raise InvalidArgument(f"the fused form at {where} is a {type(step).__name__}; "
                                  f"allowed: a FusedActivation or a tuple of them")
    return tuple(step for step in steps if step.kind != "none")
