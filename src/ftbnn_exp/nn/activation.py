"""Fully Parametric ReLU (Fig. 3 left, Appendix E) and ReActNet's RPReLU (Table 1's methods)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ftbnn_exp.nn.fused import FusedActivation, shift, slopes
from ftbnn_exp.nn.lean import FPReLUFunction
from ftbnn_exp.nn.parts import mean_range, register_part


@register_part(
    "nonlinear", "fprelu", label="FPReLU", decay=True,
    fused=lambda m: FusedActivation("slopes", m.negative.detach().flatten().contiguous(),
                                    m.positive.detach().flatten().contiguous()),
    describe=lambda m: (mean_range(m.negative), mean_range(m.positive)))
class FPReLU(nn.Module):
    """``x * positive`` for ``x > 0``, ``x * negative`` otherwise, both slopes per channel.

    Both slopes start at 1, so the module starts as the identity and learns its non-linearity
    (§2.1, Fig. 3).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.negative = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.positive = nn.Parameter(torch.ones(1, channels, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled():
            return FPReLUFunction.apply(x, self.negative, self.positive)
        return torch.where(x > 0, x * self.positive, x * self.negative)

    def extra_repr(self) -> str:
        return f"channels={self.negative.shape[1]}"


def _rprelu_cells(module: RPReLU) -> tuple[str, str]:
    """Table 2's cells: the negative slope β, and the positive slope 1 with the mean shifts."""
    return (f"β {mean_range(module.beta)}",
            f"1, γ {module.gamma.mean():.2f} ζ {module.zeta.mean():.2f}")


def _rprelu_fused(module: RPReLU) -> tuple[FusedActivation, ...]:
    """Its own three operations in its order: ``x − γ`` (exactly ``x + (−γ)``), PReLU (slope 1
    above 0: ``y · 1 = y``), ``+ ζ``."""
    return (shift(-module.gamma), slopes(module.beta, 1.0), shift(module.zeta))


@register_part("nonlinear", "rprelu", label="RPReLU", describe=_rprelu_cells,
               fused=_rprelu_fused, decay=True)
class RPReLU(nn.Module):
    """ReActNet's RPReLU (Liu et al. 2020, Eq. 3): ``PReLU_β(x − γ) + ζ``, i.e. ``x − γ + ζ``
    where ``x > γ`` and ``β(x − γ) + ζ`` where ``x ≤ γ``, all three per channel.

    Initialised as ReActNet's code (``LearnableBias`` → ``nn.PReLU`` → ``LearnableBias``):
    shifts γ = ζ = 0 and slope β = 0.25, PyTorch's PReLU default; so it starts as a PReLU.
    Its fused form is shift → slopes → shift (:mod:`.fused`).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.beta = nn.Parameter(torch.full((channels,), 0.25))
        self.zeta = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return F.prelu(x - self.gamma, self.beta) + self.zeta

    def extra_repr(self) -> str:
        return f"channels={self.beta.numel()}"
