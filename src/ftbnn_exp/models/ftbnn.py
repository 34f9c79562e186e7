"""FTBNN baseline (Fig. 1b) and Bi-Real Net (Fig. 1a) on the ResNet skeleton.

Both share one skeleton: a real-valued stem, four stages of single-conv binary blocks, global
average pooling and a real-valued FC. They differ only in the binary convolution (scale-free vs.
Bi-Real's explicit per-channel scale) and in the explicit non-linear modules after each block.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ftbnn_exp.models.layout import blocks_per_stage, is_small_input
from ftbnn_exp.nn import (
    DEFAULT_BOUND,
    BinaryActivation,
    BinaryConv2d,
    NonLinearitySchedule,
    ScaledBinaryConv2d,
    binary_conv_bn,
)

BASELINE_WIDTHS = (64, 128, 256, 512)


def real_downsample(in_channels: int, out_channels: int) -> nn.Sequential:
    """The real-valued shortcut of a reduction block: 2×2 avg-pool → 1×1 conv → BN (footnote 1,
    as Bi-Real Net). ``ceil_mode`` keeps odd sizes (MNIST's 7×7) aligned with the strided conv;
    on even sizes it changes nothing."""
    return nn.Sequential(
        nn.AvgPool2d(kernel_size=2, stride=2, ceil_mode=True, count_include_pad=False),
        nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False),
        nn.BatchNorm2d(out_channels),
    )


class BasicBlock(nn.Module):
    """sign → binary 3×3 conv → BN → add shortcut → non-linear module (Fig. 1b)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        nonlinear: nn.Module,
        scaled: bool = False,
        bound: float = DEFAULT_BOUND,
    ) -> None:
        super().__init__()
        conv_cls = ScaledBinaryConv2d if scaled else BinaryConv2d
        self.binarize = BinaryActivation(bound)
        self.conv = conv_cls(in_channels, out_channels, 3, stride=stride, padding=1, bound=bound)
        self.bn = nn.BatchNorm2d(out_channels)
        reduces = stride != 1 or in_channels != out_channels
        self.downsample = real_downsample(in_channels, out_channels) if reduces else None
        self.nonlinear = nonlinear

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.nonlinear(binary_conv_bn(x, self.binarize, self.conv, self.bn) + shortcut)


def baseline_stem(in_channels: int, out_channels: int, small_input: bool,
                  relu: bool) -> nn.Sequential:
    """7×7/2 conv → BN → 3×3/2 max-pool (Fig. 4a); 3×3/1 conv → BN for small inputs.

    Bi-Real Net's reference code has no ReLU in the stem, so neither do we by default
    (``stem_relu=True`` adds torchvision ResNet's).
    """
    if small_input:
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, out_channels, 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
    else:
        layers = [
            nn.Conv2d(in_channels, out_channels, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
    if relu:
        layers.append(nn.ReLU())
    if not small_input:
        layers.append(nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
    return nn.Sequential(*layers)


class FTBNN(nn.Module):
    """ResNet-style BNN with one binary conv per block and a scheduled non-linear module."""

    def __init__(
        self,
        stage_blocks: Sequence[int],
        schedule: NonLinearitySchedule,
        widths: Sequence[int] = BASELINE_WIDTHS,
        in_channels: int = 3,
        num_classes: int = 1000,
        image_size: int = 224,
        scaled: bool = False,
        stem_relu: bool = False,
        bound: float = DEFAULT_BOUND,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.stem = baseline_stem(in_channels, widths[0], is_small_input(image_size), stem_relu)
        stages: list[nn.Module] = []
        channels, block_index = widths[0], 0
        for stage, (n_blocks, width) in enumerate(zip(stage_blocks, widths, strict=True)):
            blocks: list[nn.Module] = []
            for i in range(n_blocks):
                stride = 2 if stage > 0 and i == 0 else 1
                nonlinear = schedule.module_for(block_index, i == n_blocks - 1, width)
                blocks.append(BasicBlock(channels, width, stride, nonlinear, scaled, bound))
                channels, block_index = width, block_index + 1
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.stages(self.stem(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.flatten(self.pool(self.forward_features(x)), 1))


def ftbnn_resnet(
    schedule: NonLinearitySchedule,
    depth: int = 18,
    in_channels: int = 3,
    num_classes: int = 1000,
    image_size: int = 224,
    stem_relu: bool = False,
    bound: float = DEFAULT_BOUND,
) -> FTBNN:
    """The FTBNN baseline (Fig. 1b): scale-free binary convs and explicit non-linear modules."""
    return FTBNN(blocks_per_stage(depth), schedule, BASELINE_WIDTHS, in_channels, num_classes,
                 image_size, scaled=False, stem_relu=stem_relu, bound=bound)


def bireal_resnet(
    schedule: NonLinearitySchedule | None = None,
    depth: int = 18,
    in_channels: int = 3,
    num_classes: int = 1000,
    image_size: int = 224,
    stem_relu: bool = False,
    bound: float = DEFAULT_BOUND,
) -> FTBNN:
    """Bi-Real Net (Fig. 1a): explicit per-channel scaling, no explicit non-linear module by
    default (a ``schedule`` may add some, for ablations)."""
    schedule = schedule or NonLinearitySchedule(stage_end="identity", other="identity")
    return FTBNN(blocks_per_stage(depth), schedule, BASELINE_WIDTHS, in_channels, num_classes,
                 image_size, scaled=True, stem_relu=stem_relu, bound=bound)
