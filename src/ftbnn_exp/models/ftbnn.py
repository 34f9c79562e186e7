"""FTBNN baseline (Fig. 1b) and Bi-Real Net (Fig. 1a) on the ResNet skeleton.

Both share one skeleton: a real-valued stem, four stages of single-conv binary blocks, global
average pooling and a real-valued FC. They differ only in the binary convolution (scale-free vs.
Bi-Real's explicit per-channel scale) and in the explicit non-linear modules after each block.

Table 1's other methods change the block itself (``block=``, :data:`BLOCKS`): a shortcut per
two binary convs (BNN, XNOR-Net, XNOR-Net++: no † in Table 1) or Real-to-Bin's order, BN
before the binarizer (Martinez et al. 2020, Fig. 1; larq-zoo's ``half_binary_block``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
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
from ftbnn_exp.models.registry import BINARY_PARTS, register_family, register_variant
from ftbnn_exp.nn import (
    DEFAULT_BOUND,
    IDENTITY,
    BinaryActivation,
    BinaryConv2d,
    NonLinearitySchedule,
    binary_conv_bn,
    make_nonlinear_module,
)
from ftbnn_exp.nn.parts import has_trait

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


def block_shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Sequential | None:
    """A block's shortcut: the identity (None) unless the block reduces, then
    :func:`real_downsample`. One rule for every block of :data:`BLOCKS`."""
    reduces = stride != 1 or in_channels != out_channels
    return real_downsample(in_channels, out_channels) if reduces else None


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
        self.downsample = block_shortcut(in_channels, out_channels, stride)
        self.nonlinear = nonlinear

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.nonlinear(binary_conv_bn(x, self.binarize, self.conv, self.bn) + shortcut)


class ResidualPairBlock(nn.Module):
    """Two binary blocks' convs under one shortcut, ResNet's basic block (He et al. 2016):
    sign → conv → BN → sign → conv → BN → add shortcut → non-linear module. The skeleton of
    BNN, XNOR-Net and XNOR-Net++ in Table 1 (no †: Bi-Real's shortcut per conv is not
    theirs); the order inside is FTBNN's, so only the shortcuts differ from ``block=ftbnn``."""

    binary_pairs = (("conv1", "bn1"), ("conv2", "bn2"))

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
        self.binarize1 = input_quantizer(in_channels)
        self.conv1 = conv_layer(in_channels, out_channels, 3, stride=stride, padding=1)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.binarize2 = input_quantizer(out_channels)
        self.conv2 = conv_layer(out_channels, out_channels, 3, stride=1, padding=1)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = block_shortcut(in_channels, out_channels, stride)
        self.nonlinear = nonlinear

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = binary_conv_bn(x, self.binarize1, self.conv1, self.bn1)
        return self.nonlinear(binary_conv_bn(out, self.binarize2, self.conv2, self.bn2)
                              + shortcut)


class PreNormBlock(nn.Module):
    """Real-to-Bin's binary block half (Martinez et al. 2020, Fig. 1; larq-zoo's
    ``half_binary_block``): BN → sign → binary conv → its scaling → non-linear module (their
    PReLU) → add shortcut. A scaling reading the real input (the gating) reads the normalised
    one, as theirs. The BN comes before the conv, so nothing after the conv cancels a
    per-channel scale, and nothing folds into the conv's output step: no export form."""

    binary_pairs = None
    """The BN normalises the conv's input: there is no (conv, BN) pair to fold (export
    refuses the block in one line)."""

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
        self.bn = nn.BatchNorm2d(in_channels)
        self.binarize = input_quantizer(in_channels)
        self.conv = conv_layer(in_channels, out_channels, 3, stride=stride, padding=1)
        self.downsample = block_shortcut(in_channels, out_channels, stride)
        self.nonlinear = nonlinear

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        normed = self.bn(x)
        binary = self.binarize(normed)
        out = (self.conv(binary, normed) if has_trait(self.conv, "real_input")
               else self.conv(binary))
        return self.nonlinear(out) + shortcut


@dataclass(frozen=True)
class BlockLayout:
    """A block of the ResNet skeleton (``block=``) and its traits: the class and how many of
    the layout's binary convs it holds (one shortcut per ``convs`` convs)."""

    cls: type[nn.Module]
    convs: int
    description: str


BLOCKS: dict[str, BlockLayout] = {
    "ftbnn": BlockLayout(BasicBlock, 1, "sign → conv → BN, + shortcut per conv (Fig. 1b, †)"),
    "resnet": BlockLayout(ResidualPairBlock, 2, "two sign → conv → BN per shortcut (He et al.)"),
    "real2bin": BlockLayout(PreNormBlock, 1, "BN → sign → conv → scale → module, + shortcut "
                                             "per conv (Martinez et al., †)"),
}
"""The blocks ``ftbnn_resnet`` and ``bireal_resnet`` take (``model.block=``)."""


def block_layout(name: str) -> BlockLayout:
    if name not in BLOCKS:
        raise InvalidArgument(f"model.block={name!r} is not a block; allowed: "
                              f"{', '.join(BLOCKS)}")
    return BLOCKS[name]


def baseline_stem(in_channels: int, out_channels: int, small_input: bool,
                  nonlinear: str = "identity") -> nn.Sequential:
    """7×7/2 conv → BN → 3×3/2 max-pool (Fig. 4a); 3×3/1 conv → BN for small inputs.

    Bi-Real Net's reference code has no non-linear module in the stem, so neither do we by
    default; ``nonlinear`` names a registered one after the BN (torchvision's ``relu``, IR-Net's
    ``hardtanh``, Real-to-Bin's ``prelu``).
    """
    kernel, stride = (3, 1) if small_input else (7, 2)
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2,
                  bias=False),
        nn.BatchNorm2d(out_channels),
    ]
    if nonlinear != "identity":
        layers.append(make_nonlinear_module(nonlinear, out_channels))
    if not small_input:
        layers.append(nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
    return nn.Sequential(*layers)


def stem_output_size(image_size: int) -> int:
    """The stem's output side: ``image_size`` for small inputs, else halved twice (7×7/2 conv,
    3×3/2 max-pool, both padded: ⌈⌈S/2⌉/2⌉)."""
    return image_size if is_small_input(image_size) else halved(image_size, 2)


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
        stem_nonlinear: str = "identity",
        parts: BinaryParts = FTBNN_PARTS,
        block: str = "ftbnn",
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.stem = baseline_stem(in_channels, widths[0], is_small_input(image_size),
                                  stem_nonlinear)
        layout = block_layout(block)
        if any(length % layout.convs for length in stage_blocks):
            raise InvalidArgument(f"model.block={block} holds {layout.convs} convs; stages of "
                                  f"{list(stage_blocks)} convs do not divide into it")
        self.stages = build_stages([n // layout.convs for n in stage_blocks], widths, widths[0],
                                   schedule, _block_factory(layout, parts, image_size))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1], num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.stages(self.stem(x))

    def forward_head(self, x: Tensor) -> Tensor:
        return self.fc(torch.flatten(self.pool(x), 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


def _block_factory(layout: BlockLayout, parts: BinaryParts, image_size: int
                   ) -> Callable[[int, int, bool, nn.Module], nn.Module]:
    """The stage builder's block factory: ``layout``'s blocks made of ``parts``, each conv
    told its output size (``build_stages`` makes the blocks in order, and each reducing
    block halves the side)."""
    side = [stem_output_size(image_size)]

    def block(c_in: int, c_out: int, reduces: bool, nonlinear: nn.Module) -> nn.Module:
        if reduces:
            side[0] = halved(side[0])
        conv_layer = functools.partial(parts.conv_layer, output_size=(side[0], side[0]))
        return layout.cls(c_in, c_out, 2 if reduces else 1, nonlinear, parts.input_quantizer,
                          conv_layer)

    return block


def _stem(stem_relu: bool, stem_nonlinear: str) -> str:
    """``stem_nonlinear``, with the older ``stem_relu=True`` read as ``relu``."""
    if stem_relu and stem_nonlinear not in ("identity", "relu"):
        raise InvalidArgument(f"model.stem_relu=true and model.stem_nonlinear={stem_nonlinear} "
                              "name two stem modules; give one")
    return "relu" if stem_relu else stem_nonlinear


@register_family("ftbnn_resnet", takes_schedule=True, parts=BINARY_PARTS)
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
    block: str = "ftbnn",
    stem_nonlinear: str = "identity",
    width: int = 64,
) -> FTBNN:
    """The FTBNN baseline (Fig. 1b): scale-free binary convs and explicit non-linear modules;
    ``binarizer`` and ``scaling`` name other registered parts (Table 1's methods), the
    ``*_options`` their own arguments; ``block`` another block of :data:`BLOCKS`,
    ``stem_nonlinear`` a registered module after the stem's BN (``stem_relu``: ``relu``) and
    ``width`` the first stage's (64: the paper's)."""
    return FTBNN(blocks_per_stage(depth, (18, 34)), schedule, stage_widths(width), in_channels,
                 num_classes, image_size, _stem(stem_relu, stem_nonlinear),
                 binary_parts(binarizer, scaling, bound, binarizer_options, scaling_options),
                 block)


@register_runner("ftbnn_resnet")
def fused_baseline(model: FTBNN) -> FusedPlan:
    """The baseline's export as the fused runner runs it: each :class:`BasicBlock` one unit,
    its shortcut the input or, where it reduces, the real 1×1 shortcut. Other blocks
    (``block=resnet``, ``real2bin``) are refused in one line: the runner falls back to the
    binary convs alone."""
    blocks = [block for stage in model.stages for block in stage]
    other = next((b for b in blocks if type(b) is not BasicBlock), None)
    if other is not None:
        raise InvalidArgument(f"the fused runner runs FTBNN blocks (block=ftbnn), not "
                              f"{type(other).__name__}")
    return FusedPlan(model.stem, tuple(
        FusedUnit(b.binarize, b.conv, b.bn, b.nonlinear,
                  IDENTITY_SHORTCUT if b.downsample is None else b.downsample)
        for b in blocks), model.forward_head)


def _bireal_label(kwargs: Mapping[str, Any], schedule_name: str) -> str:
    return schedule_name if kwargs.get("explicit_nonlinearity") else "none"


@register_family("bireal_resnet", takes_schedule=True, nonlinearity_label=_bireal_label,
                 parts=BINARY_PARTS)
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
                 num_classes, image_size, _stem(stem_relu, "identity"),
                 binary_parts(binarizer, scaling, bound, binarizer_options, options))


for _depth in (18, 34):
    register_variant(f"ftbnn_resnet{_depth}", "ftbnn_resnet", depth=_depth)
    register_variant(f"bireal_resnet{_depth}", "bireal_resnet", depth=_depth)
