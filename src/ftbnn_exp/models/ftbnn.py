"""FTBNN baseline (Fig. 1b) and Bi-Real Net (Fig. 1a) on the ResNet skeleton.

Both share one skeleton: a real-valued stem, four stages of single-conv binary blocks, global
average pooling and a real-valued FC. They differ only in the binary convolution (scale-free vs.
Bi-Real's explicit per-channel scale) and in the explicit non-linear modules after each block.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ftbnn_exp.errors import InvalidArgument
from ftbnn_exp.models.layout import (
    FTBNN_PARTS,
    BinaryParts,
    ConvLayer,
    InputQuantizer,
    binary_parts,
    blocks_per_stage,
    build_stages,
    is_small_input,
)
from ftbnn_exp.models.registry import register_family, register_variant
from ftbnn_exp.nn import (
    DEFAULT_BOUND,
    IDENTITY,
    BinaryActivation,
    BinaryConv2d,
    NonLinearitySchedule,
    binary_conv_bn,
)

BASELINE_WIDTHS = (64, 128, 256, 512)


def stage_widths(width: int) -> tuple[int, ...]:
    """The four stages' widths from the first's, doubling per stage as ResNet's 64-512; 64 is
    the paper's. Smaller widths scale a row down without changing its modules (a CPU study)."""
    if not isinstance(width, int) or isinstance(width, bool) or width < 1:
        raise InvalidArgument(f"model.width={width!r} is not a whole number from 1 (64: the "
                              f"paper's widths 64-512)")
    return tuple(width * 2**stage for stage in range(len(BASELINE_WIDTHS)))


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
    """sign → binary 3×3 conv → BN → add shortcut → non-linear module (Fig. 1b). The binarizer
    and the binary conv are parts passed in (``input_quantizer``, ``conv_layer``; the paper's
    sign and scale-free conv by default)."""

    binary_pairs = (("conv", "bn"),)
    """Each binary conv and the BN that follows it (deployment folds them together)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        nonlinear: nn.Module,
        input_quantizer: InputQuantizer = BinaryActivation,
        conv_layer: ConvLayer = BinaryConv2d,
    ) -> None:
        super().__init__()
        self.binarize = input_quantizer(in_channels)
        self.conv = conv_layer(in_channels, out_channels, 3, stride=stride, padding=1)
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
    kernel, stride = (3, 1) if small_input else (7, 2)
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2,
                  bias=False),
        nn.BatchNorm2d(out_channels),
    ]
    if relu:
        layers.append(nn.ReLU())
    if not small_input:
        layers.append(nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
    return nn.Sequential(*layers)


class FTBNN(nn.Module):
    """ResNet-style BNN with one binary conv per block and a scheduled non-linear module; the
    blocks' binarizer and binary conv come from ``parts``."""

    def __init__(
        self,
        stage_blocks: Sequence[int],
        schedule: NonLinearitySchedule,
        widths: Sequence[int] = BASELINE_WIDTHS,
        in_channels: int = 3,
        num_classes: int = 1000,
        image_size: int = 224,
        stem_relu: bool = False,
        parts: BinaryParts = FTBNN_PARTS,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.stem = baseline_stem(in_channels, widths[0], is_small_input(image_size), stem_relu)

        def block(c_in: int, c_out: int, reduces: bool, nonlinear: nn.Module) -> BasicBlock:
            return BasicBlock(c_in, c_out, 2 if reduces else 1, nonlinear,
                              parts.input_quantizer, parts.conv_layer)

        self.stages = build_stages(stage_blocks, widths, widths[0], schedule, block)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1], num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.stages(self.stem(x))

    def forward_head(self, x: Tensor) -> Tensor:
        return self.fc(torch.flatten(self.pool(x), 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


@register_family("ftbnn_resnet", takes_schedule=True, fast_path="network")
def ftbnn_resnet(
    schedule: NonLinearitySchedule,
    depth: int = 18,
    in_channels: int = 3,
    num_classes: int = 1000,
    image_size: int = 224,
    stem_relu: bool = False,
    bound: float = DEFAULT_BOUND,
    binarizer: str = "sign",
    scaling: str = "none",
    binarizer_options: dict[str, Any] | None = None,
    scaling_options: dict[str, Any] | None = None,
    width: int = 64,
) -> FTBNN:
    """The FTBNN baseline (Fig. 1b): scale-free binary convs and explicit non-linear modules;
    ``binarizer`` and ``scaling`` name other registered parts (Table 1's methods), the
    ``*_options`` their own arguments; ``width`` the first stage's (64: the paper's)."""
    return FTBNN(blocks_per_stage(depth, (18, 34)), schedule, stage_widths(width), in_channels,
                 num_classes, image_size, stem_relu,
                 binary_parts(binarizer, scaling, bound, binarizer_options, scaling_options))


def _bireal_label(kwargs: Mapping[str, Any], schedule_name: str) -> str:
    return schedule_name if kwargs.get("explicit_nonlinearity") else "none"


@register_family("bireal_resnet", takes_schedule=True, nonlinearity_label=_bireal_label)
def bireal_resnet(
    schedule: NonLinearitySchedule = IDENTITY,
    depth: int = 18,
    in_channels: int = 3,
    num_classes: int = 1000,
    image_size: int = 224,
    stem_relu: bool = False,
    bound: float = DEFAULT_BOUND,
    explicit_nonlinearity: bool = False,
    scale_gradient: bool = False,
    binarizer: str = "sign",
    scaling: str = "channel_mean",
    binarizer_options: dict[str, Any] | None = None,
    scaling_options: dict[str, Any] | None = None,
    width: int = 64,
) -> FTBNN:
    """Bi-Real Net (Fig. 1a): explicit per-channel scaling and no explicit non-linear module;
    ``explicit_nonlinearity=True`` adds ``schedule``'s modules (ablations). The scale passes
    no gradient, as in Bi-Real's code (``scale_gradient=True``: it does; see
    :class:`~ftbnn_exp.nn.ScaledBinaryConv2d`); ``width`` as for the baseline. Table 3's row
    keeps FTBNN's sign binarizer, so that only the scale and the modules differ
    (``binarizer=approxsign``: Bi-Real's own)."""
    options = {**(scaling_options or {}), **({"scale_gradient": True} if scale_gradient else {})}
    return FTBNN(blocks_per_stage(depth, (18, 34)),
                 schedule if explicit_nonlinearity else IDENTITY, stage_widths(width), in_channels,
                 num_classes, image_size, stem_relu,
                 binary_parts(binarizer, scaling, bound, binarizer_options, options))


for _depth in (18, 34):
    register_variant(f"ftbnn_resnet{_depth}", "ftbnn_resnet", depth=_depth)
    register_variant(f"bireal_resnet{_depth}", "bireal_resnet", depth=_depth)
