"""Appendix E's layers, behaviour for behaviour: the yardstick for our exactness tests and for
the memory benchmark (``benchmarks/memory.py``). Not used for training."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ftbnn_exp.nn.activation import FPReLU
from ftbnn_exp.nn.binarize import DEFAULT_BOUND
from ftbnn_exp.nn.conv import BinaryConv2d
from ftbnn_exp.nn.parts import part_of


class Sign(nn.Module):
    """Appendix E's activation binarizer: ``sign(x).detach() + clamp(x) - clamp(x).detach()``."""

    def __init__(self, bound: float = DEFAULT_BOUND) -> None:
        super().__init__()
        self.bound = bound

    def forward(self, x: Tensor) -> Tensor:
        out = torch.clamp(x, -self.bound, self.bound)
        return torch.sign(x).detach() + out - out.detach()


def binary_weights(weights: Tensor, bound: float = DEFAULT_BOUND) -> Tensor:
    """Appendix E's ``BConv`` weight binarization (the same detach trick)."""
    clipped = torch.clamp(weights, -bound, bound)
    return torch.sign(weights).detach() + clipped - clipped.detach()


class BConv(nn.Module):
    """Appendix E's binary convolution; ``weights`` as the paper names them."""

    def __init__(self, conv: BinaryConv2d) -> None:
        super().__init__()
        self.stride, self.padding, self.groups = conv.stride, conv.padding, conv.groups
        self.bound = conv.bound
        self.weights = nn.Parameter(conv.weight.detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, binary_weights(self.weights, self.bound), stride=self.stride,
                        padding=self.padding, groups=self.groups)


class ReferenceFPReLU(nn.Module):
    """Appendix E's FPReLU: ``where(x > 0, x * r_weights, x * l_weights)``."""

    def __init__(self, act: FPReLU) -> None:
        super().__init__()
        self.l_weights = nn.Parameter(act.negative.detach().clone())
        self.r_weights = nn.Parameter(act.positive.detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        return torch.where(x > 0, x * self.r_weights, x * self.l_weights)


APPENDIX_E = {("binarizer", "sign"): Sign, ("scaling", "none"): BConv,
              ("nonlinear", "fprelu"): ReferenceFPReLU}
"""The registered parts Appendix E writes out, and its layer for each."""


def with_appendix_e_layers(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose binarizers, scale-free binary convs and FPReLUs are Appendix E's
    (same values); any other part (Bi-Real's scaled conv, another method's binarizer) has no
    Appendix E form and is kept."""
    copied = copy.deepcopy(model)
    for parent in list(copied.modules()):
        for name, child in list(parent.named_children()):
            entry = part_of(child)
            layer = APPENDIX_E.get((entry.kind, entry.name)) if entry else None
            if layer is Sign:
                setattr(parent, name, Sign(child.bound))
            elif layer is not None:
                setattr(parent, name, layer(child))
    return copied
