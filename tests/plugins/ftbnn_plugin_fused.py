"""A plug-in as a researcher writes one, outside the package, for deployment: a model family
that declares its own fused runner, and a non-linear module whose fused form shifts, clamps
and scales. ``deploy verify`` runs both fused on the C++ kernels, bit-exact, with no package
edit.

Used with ``hydra.searchpath=[file://<this folder>/conf] experiment=fused_plugin`` (training)
and ``python -m ftbnn_exp.deploy --plugin ftbnn_plugin_fused verify <checkpoint>``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ftbnn_exp.deploy.runners import IDENTITY_SHORTCUT, FusedPlan, FusedUnit, register_runner
from ftbnn_exp.models import register_family
from ftbnn_exp.models.layout import build_stages
from ftbnn_exp.nn import BinaryActivation, BinaryConv2d, NonLinearitySchedule, register_part
from ftbnn_exp.nn.fused import clamp, scale, shift


@register_part("nonlinear", "shifted_hardtanh", label="scaled Hardtanh(x + b)",
               make=lambda channels: ShiftedHardtanh(channels),
               fused=lambda m: (shift(m.shift), clamp(-1.0, 1.0), scale(m.scale)))
class ShiftedHardtanh(nn.Module):
    """``clamp(x + b, −1, 1) · s``, ``b`` and ``s`` per channel: its fused form is its own
    three steps in its order (shift, clamp, scale), which the C++ kernel does not compute
    itself, so the fused runner applies them after it."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.shift = nn.Parameter(torch.full((1, channels, 1, 1), 0.1))
        self.scale = nn.Parameter(torch.full((1, channels, 1, 1), 1.5))

    def forward(self, x: Tensor) -> Tensor:
        return torch.clamp(x + self.shift, -1.0, 1.0) * self.scale


class PooledBlock(nn.Module):
    """sign → binary 3×3 conv → BN → + shortcut → module; where it reduces (stride 2, twice
    the channels) the shortcut is its input average-pooled and copied twice along channels
    (no real conv in the shortcut, and the conv's input is not doubled: neither of the
    package's families has this block)."""

    binary_pairs = (("conv", "bn"),)

    def __init__(self, in_channels: int, out_channels: int, reduces: bool,
                 nonlinear: nn.Module) -> None:
        super().__init__()
        self.binarize = BinaryActivation(in_channels)
        self.conv = BinaryConv2d(in_channels, out_channels, 3, stride=2 if reduces else 1,
                                 padding=1)
        self.bn = nn.BatchNorm2d(out_channels)
        self.pool = nn.AvgPool2d(2, ceil_mode=True) if reduces else None
        self.nonlinear = nonlinear

    def shortcut(self, x: Tensor) -> Tensor:
        pooled = self.pool(x)
        return torch.cat([pooled, pooled], dim=1)

    def forward(self, x: Tensor) -> Tensor:
        residual = x if self.pool is None else self.shortcut(x)
        return self.nonlinear(self.bn(self.conv(self.binarize(x))) + residual)


class PooledNet(nn.Module):
    """A real 3×3 stem, two stages of :class:`PooledBlock` (width w, 2w), pooling and FC."""

    def __init__(self, schedule: NonLinearitySchedule, blocks: int, width: int,
                 in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(width))
        self.stages = build_stages([blocks, blocks], [width, 2 * width], width, schedule,
                                   PooledBlock)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward_head(self, x: Tensor) -> Tensor:
        return self.fc(torch.flatten(self.pool(x), 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.stages(self.stem(x)))


@register_family("pooled_net", takes_schedule=True)
def pooled_net(schedule: NonLinearitySchedule, blocks: int = 2, width: int = 16,
               in_channels: int = 3, num_classes: int = 1000) -> PooledNet:
    return PooledNet(schedule, blocks, width, in_channels, num_classes)


@register_runner("pooled_net")
def fused_pooled_net(model: PooledNet) -> FusedPlan:
    """Each block one unit; its shortcut the input, or the pooled copy and paste."""
    return FusedPlan(model.stem, tuple(
        FusedUnit(b.binarize, b.conv, b.bn, b.nonlinear,
                  IDENTITY_SHORTCUT if b.pool is None else b.shortcut)
        for stage in model.stages for b in stage), model.forward_head)
