"""Fully Parametric ReLU (Fig. 3 left, Appendix E)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ftbnn_exp.nn.lean import FPReLUFunction


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
