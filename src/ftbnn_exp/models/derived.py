"""The derived models: binary purification (§2.2) + group execution (§2.3), Fig. 3–4.

Widths, the 44-layer layout and the bridge's details are not published; our choices follow what
Table 4 implies (``docs/table4-complexity.md``) and are noted where they are made.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ftbnn_exp.deploy.runners import IDENTITY_SHORTCUT, FusedPlan, FusedUnit, register_runner
from ftbnn_exp.errors import InvalidArgument
from ftbnn_exp.models.layout import (
    FTBNN_PARTS,
    BinaryParts,
    ConvLayer,
    InputQuantizer,
    binary_parts,
    blocks_per_stage,
    build_stages,
    halved,
    is_small_input,
)
from ftbnn_exp.models.registry import BINARY_PARTS, SolvedWidth, register_family, register_variant
from ftbnn_exp.nn import (
    DEFAULT_BOUND,
    BinaryActivation,
    BinaryConv2d,
    NonLinearitySchedule,
    binary_conv_bn,
)

STEM_CHANNELS = 32
"""Half the baseline's 64 stem channels (§3, Fig. 4b)."""


def reduction_groups(groups: int) -> int:
    """Groups of a reduction block's conv: 2 when G ≤ 2, G otherwise (Fig. 4 caption)."""
    return 2 if groups <= 2 else groups


def width_problem(width: int, groups: int) -> str | None:
    """Why ``width`` cannot be built with ``groups``, or None when it can.

    Normal blocks need every stage width (w, 2w, 4w, 8w) divisible by G; reduction blocks need
    their doubled input divisible by their own group number.
    """
    if width < 1:
        return f"width={width} must be positive"
    if width % groups:
        return f"width={width} is not divisible by groups={groups}"
    if (2 * width) % reduction_groups(groups):
        return f"width={width} doubled is not divisible by {reduction_groups(groups)} groups"
    return None


def admissible_widths_near(width: int, groups: int, count: int = 2) -> list[int]:
    """The nearest admissible widths below and above ``width``."""
    below = [w for w in range(width - 1, 0, -1) if width_problem(w, groups) is None][:count]
    above = [w for w in range(width + 1, width + 64 * groups) if width_problem(w, groups) is None]
    return sorted(below) + above[:count]


def check_width(width: int, groups: int) -> None:
    problem = width_problem(width, groups)
    if problem:
        near = ", ".join(str(w) for w in admissible_widths_near(max(width, 1), groups))
        raise InvalidArgument(f"{problem}; widths that work near it: {near}")


class InitialBlock(nn.Sequential):
    """3×3/2 real conv to 32 channels → BN → 3×3/2 max-pool (Fig. 4b); 3×3/1, no pool, on small
    inputs."""

    def __init__(self, in_channels: int, small_input: bool) -> None:
        stride = 1 if small_input else 2
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, STEM_CHANNELS, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(STEM_CHANNELS),
        ]
        if not small_input:
            layers.append(nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
        super().__init__(*layers)


class BridgeBlock(nn.Sequential):
    """sign → binary 3×3 conv 32 → w → BN (Fig. 4c): lets the width be anything.

    Dense (1 group), since 32 is not divisible by every G; no shortcut (the channel count
    changes) and no non-linear module (not drawn in Fig. 4c).
    """

    binary_pairs = (("1", "2"),)
    """Each binary conv and the BN that follows it (deployment folds them together)."""

    def __init__(self, width: int, input_quantizer: InputQuantizer = BinaryActivation,
                 conv_layer: ConvLayer = BinaryConv2d) -> None:
        super().__init__(
            input_quantizer(STEM_CHANNELS),
            conv_layer(STEM_CHANNELS, width, 3, stride=1, padding=1),
            nn.BatchNorm2d(width),
        )

    def forward(self, x: Tensor) -> Tensor:
        return binary_conv_bn(x, self[0], self[1], self[2])


class NormalBlock(nn.Module):
    """sign → group binary 3×3 conv → BN → + x → non-linear module (Fig. 4d). No channel
    shuffle between the groups: Fig. 4d draws none and Table 4 counts none; the groups mix at
    the reduction blocks (``docs/table4-complexity.md``)."""

    binary_pairs = (("conv", "bn"),)

    def __init__(self, channels: int, groups: int, nonlinear: nn.Module,
                 input_quantizer: InputQuantizer = BinaryActivation,
                 conv_layer: ConvLayer = BinaryConv2d) -> None:
        super().__init__()
        self.binarize = input_quantizer(channels)
        self.conv = conv_layer(channels, channels, 3, stride=1, padding=1, groups=groups)
        self.bn = nn.BatchNorm2d(channels)
        self.nonlinear = nonlinear

    def forward(self, x: Tensor) -> Tensor:
        return self.nonlinear(binary_conv_bn(x, self.binarize, self.conv, self.bn) + x)


class ReductionBlock(nn.Module):
    """Copy-and-paste reduction block (§2.2, Fig. 3 middle, Fig. 4e).

    The input is concatenated with itself; the binary conv runs on that doubled input with
    stride 2; the shortcut is a 3×3/2 average pool of the doubled input. Pooling before the
    duplication computes the same tensor with half the work (and is what Table 4's FLOPs count).
    The pool excludes the zero padding from its average (our choice; the paper is silent).
    """

    binary_pairs = (("conv", "bn"),)

    def __init__(self, in_channels: int, groups: int, nonlinear: nn.Module,
                 input_quantizer: InputQuantizer = BinaryActivation,
                 conv_layer: ConvLayer = BinaryConv2d) -> None:
        super().__init__()
        out_channels = 2 * in_channels
        self.binarize = input_quantizer(out_channels)
        self.conv = conv_layer(out_channels, out_channels, 3, stride=2, padding=1,
                               groups=reduction_groups(groups))
        self.bn = nn.BatchNorm2d(out_channels)
        self.pool = nn.AvgPool2d(kernel_size=3, stride=2, padding=1, count_include_pad=False)
        self.nonlinear = nonlinear

    def shortcut(self, x: Tensor) -> Tensor:
        """The pooled input, copied and pasted (the fused runner computes it the same way)."""
        pooled = self.pool(x)
        return torch.cat([pooled, pooled], dim=1)

    def forward(self, x: Tensor) -> Tensor:
        doubled = torch.cat([x, x], dim=1)
        return self.nonlinear(binary_conv_bn(doubled, self.binarize, self.conv, self.bn)
                              + self.shortcut(x))


class DerivedFTBNN(nn.Module):
    """Binary-purified FTBNN with group execution; stage widths w, 2w, 4w, 8w."""

    def __init__(
        self,
        stage_blocks: Sequence[int],
        width: int,
        groups: int,
        schedule: NonLinearitySchedule,
        in_channels: int = 3,
        num_classes: int = 1000,
        image_size: int = 224,
        parts: BinaryParts = FTBNN_PARTS,
    ) -> None:
        super().__init__()
        if groups < 1:
            raise InvalidArgument(f"groups={groups} must be >= 1")
        check_width(width, groups)
        self.num_classes, self.width, self.groups = num_classes, width, groups
        small = is_small_input(image_size)
        self.stem = InitialBlock(in_channels, small)
        # each conv's output side (a spatial scaling's size): the stem's 3×3/2 conv and max-pool
        # halve it twice on large inputs; the bridge keeps it; each reduction block halves it
        side = [image_size if small else halved(image_size, 2)]
        self.bridge = BridgeBlock(width, parts.input_quantizer,
                                  functools.partial(parts.conv_layer, output_size=(side[0],) * 2))

        def block(c_in: int, c_out: int, reduces: bool, nonlinear: nn.Module) -> nn.Module:
            kind = ReductionBlock if reduces else NormalBlock
            side[0] = halved(side[0]) if reduces else side[0]
            conv_layer = functools.partial(parts.conv_layer, output_size=(side[0],) * 2)
            return kind(c_in, groups, nonlinear, parts.input_quantizer, conv_layer)

        widths = [width * 2 ** stage for stage in range(len(stage_blocks))]
        self.stages = build_stages(stage_blocks, widths, width, schedule, block)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1], num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.stages(self.bridge(self.stem(x)))

    def forward_head(self, x: Tensor) -> Tensor:
        return self.fc(torch.flatten(self.pool(x), 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


@register_family("derived_ftbnn", takes_schedule=True, convention="paper",
                 solved_width=SolvedWidth(("depth", "groups"),
                                          lambda width, depth, groups: width_problem(width, groups),
                                          table4=True),
                 parts=BINARY_PARTS)
def derived_ftbnn(
    schedule: NonLinearitySchedule,
    width: int,
    depth: int = 18,
    groups: int = 1,
    in_channels: int = 3,
    num_classes: int = 1000,
    image_size: int = 224,
    bound: float = DEFAULT_BOUND,
    binarizer: str = "sign",
    scaling: str = "none",
    binarizer_options: dict[str, Any] | None = None,
    scaling_options: dict[str, Any] | None = None,
) -> DerivedFTBNN:
    """A derived model of Table 4 (depth 18, 34 or 44; any admissible width and G), its binary
    blocks made of the registered parts ``binarizer`` and ``scaling``."""
    return DerivedFTBNN(blocks_per_stage(depth), width, groups, schedule, in_channels,
                        num_classes, image_size,
                        binary_parts(binarizer, scaling, bound, binarizer_options,
                                     scaling_options))


@register_runner("derived_ftbnn")
def fused_derived(model: DerivedFTBNN) -> FusedPlan:
    """A derived model's export as the fused runner runs it: the bridge (no shortcut, no
    module), then each block one unit: a normal block's shortcut is its input, a reduction
    block's input is doubled and its shortcut pooled and doubled."""
    bridge = FusedUnit(model.bridge[0], model.bridge[1], model.bridge[2], None, None)
    units = [FusedUnit(b.binarize, b.conv, b.bn, b.nonlinear, b.shortcut, doubled=True)
             if isinstance(b, ReductionBlock) else
             FusedUnit(b.binarize, b.conv, b.bn, b.nonlinear, IDENTITY_SHORTCUT)
             for stage in model.stages for b in stage]
    return FusedPlan(model.stem, (bridge, *units), model.forward_head)


for _depth, _width in ((18, 128), (34, 88), (44, 76)):
    register_variant(f"ftbnn_derived{_depth}", "derived_ftbnn", depth=_depth, width=_width)
