"""Activation binarizers of the methods the paper's Table 1 compares FTBNN with, as parts.

Each keeps :class:`~ftbnn_exp.nn.binarize.BinaryActivation`'s forward contract (``torch.sign``,
0 kept as Appendix B's deployment needs; ``tanh`` in multi-step stage 0, which the base class
applies) and overrides only ``binarize``, replacing FTBNN's clipped STE by its method's
gradient estimator: Table 1's "GA". None declares the lean path
exact (its int8 code holds the STE mask, not these gradients), so blocks built with them train
on the plain graph.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ftbnn_exp.nn.binarize import DEFAULT_BOUND, BinaryActivation
from ftbnn_exp.nn.parts import FusedBinarizer, register_part


class ApproxSignFunction(torch.autograd.Function):
    """``torch.sign`` forward; Bi-Real Net's ApproxSign gradient (Liu et al. 2018, Eq. 5,
    Fig. 3b): ``2 + 2x`` on [-1, 0), ``2 − 2x`` on [0, 1), 0 elsewhere, i.e. ``max(0, 2 − 2|x|)``
    (the piecewise form is continuous, 0 at ±1 and 2 at 0, so no boundary is ambiguous). Only
    ``x`` is kept for backward."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        return torch.sign(x)

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad_output * (2 - 2 * x.abs()).clamp_min(0)


def approx_sign(x: Tensor) -> Tensor:
    """Binarize ``x`` to {-1, 0, +1} with :class:`ApproxSignFunction`'s gradient."""
    return ApproxSignFunction.apply(x)


@register_part("binarizer", "approxsign", label="ApproxSign", table1=("GA",),
               fused=lambda module: FusedBinarizer())
class ApproxSign(BinaryActivation):
    """Bi-Real Net's activation binarizer (Liu et al. 2018, §3.2): sign forward, the
    piecewise-polynomial ApproxSign derivative backward (:class:`ApproxSignFunction`), a
    closer fit to sign's than the STE's box. ``bound`` (the STE's window) is not used."""

    def binarize(self, x: Tensor) -> Tensor:
        return approx_sign(x)

    def extra_repr(self) -> str:
        return f"mode={self.mode}"


@register_part("binarizer", "rsign", label="RSign", table1=("GA",),
               fused=lambda module: FusedBinarizer(module.threshold.detach().flatten()))
class RSign(BinaryActivation):
    """ReActNet's RSign (Liu et al. 2020, Eq. 2): ``sign(x − α)`` with a learnable threshold α
    per channel, initialised to 0 (ReActNet's ``LearnableBias`` b, α = −b).

    Backward as ReActNet's released code, which puts Bi-Real's ApproxSign on ``x − α``:
    ``∂/∂x = ApproxSign'(x − α)`` and ``∂/∂α`` its negation, summed over batch and pixels.
    Eq. 2 maps ``x = α`` to −1; like ReActNet's code (and Appendix B's deployment) we keep
    ``torch.sign``'s 0 there. The estimator is fixed: Table 1's GA mark is a trait of the
    registered part, so an STE variant would be a part of its own. In ``tanh`` mode
    (multi-step stage 0) the output is ``tanh(x)`` like every binarizer's, so α starts
    learning in stage 1."""

    def __init__(self, channels: int = 0, bound: float = DEFAULT_BOUND) -> None:
        super().__init__(channels, bound)
        if channels < 1:
            raise ValueError(f"RSign learns a threshold per channel; channels={channels}")
        self.threshold = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def binarize(self, x: Tensor) -> Tensor:
        # autograd's subtraction saves nothing: x − α is the one tensor kept for backward
        return approx_sign(x - self.threshold)

    def extra_repr(self) -> str:
        return f"channels={self.threshold.shape[1]}, mode={self.mode}"


T_MIN, T_MAX = 0.1, 10.0
"""IR-Net's EDE range (Qin et al. 2020, §3.2: T_min = 10⁻¹, T_max = 10¹; its CIFAR code uses
T_min = 10⁻³, hence configurable)."""


def ede_schedule(progress: float, t_min: float = T_MIN, t_max: float = T_MAX
                 ) -> tuple[float, float]:
    """``(t, k)`` of IR-Net's Eq. 12 at ``progress`` = i/N, the fraction of training done:
    ``t = T_min · 10^(progress · log10(T_max / T_min))``, ``k = max(1/t, 1)``."""
    t = t_min * 10 ** (progress * math.log10(t_max / t_min))
    return t, max(1 / t, 1.0)


class EDEFunction(torch.autograd.Function):
    """``torch.sign`` forward; backward the derivative of IR-Net's ``k·tanh(t·x)`` (Eq. 11):
    ``k·t·(1 − tanh²(t·x))``. Only ``x`` is kept (t and k are numbers)."""

    @staticmethod
    def forward(ctx, x: Tensor, t: float, k: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.t, ctx.k = t, k
        return torch.sign(x)

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        tanh = torch.tanh(x * ctx.t)
        return grad_output * (ctx.k * ctx.t) * (1 - tanh * tanh), None, None


@register_part("binarizer", "ede", label="EDE", table1=("GA",), progress=True,
               fused=lambda module: FusedBinarizer())
class EDE(BinaryActivation):
    """IR-Net's Error Decay Estimator (Qin et al. 2020, §3.2, Eq. 11-12) on the activations:
    sign forward; backward ``k·tanh(t·x)``'s derivative, from identity-like (t = 0.1, k = 10)
    at the start of training to sign-like (t = 10, k = 1) at its end.

    ``progress`` (i/N in Eq. 12) is set by training (:class:`~ftbnn_exp.training.progress.
    TrainingProgress`): per batch by default, per epoch as IR-Net's code with
    ``progress_step=epoch`` (``experiment=table1/irnet`` sets it). IR-Net also applies EDE to
    the weights: that is the ``libra`` scaling's weight estimator."""

    def __init__(self, channels: int = 0, bound: float = DEFAULT_BOUND, t_min: float = T_MIN,
                 t_max: float = T_MAX) -> None:
        super().__init__(channels, bound)
        self.t_min, self.t_max = t_min, t_max
        self.progress = 0.0

    def binarize(self, x: Tensor) -> Tensor:
        return EDEFunction.apply(x, *ede_schedule(self.progress, self.t_min, self.t_max))

    def extra_repr(self) -> str:
        return (f"t_min={self.t_min}, t_max={self.t_max}, progress={self.progress:.3f}, "
                f"mode={self.mode}")
