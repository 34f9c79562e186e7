"""Network layouts shared by the model families: blocks per stage, input-size rules, and the
one stage builder every family uses."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ftbnn_exp.errors import InvalidArgument
from ftbnn_exp.nn import DEFAULT_BOUND, BlockPosition, NonLinearitySchedule, part

BLOCKS_PER_STAGE: dict[int, tuple[int, int, int, int]] = {
    18: (4, 4, 4, 4),
    34: (6, 8, 12, 6),
    44: (8, 10, 14, 10),
}
"""One binary 3×3 conv per block, so depth = binary blocks + stem + FC. 18 and 34 are
Bi-Real Net's layouts; 44 → [8, 10, 14, 10] is our reading of Table 4's 44-layer rows (the only
regular split of 42 blocks that fits both their params and FLOPs; the paper does not say)."""

SMALL_INPUT_MAX = 64
"""Inputs of at most this many pixels get a 3×3/1 stem without max-pool (our choice for
digits, MNIST and CIFAR, as is usual for ResNets on small images); larger ones get the
ImageNet stem."""


def blocks_per_stage(depth: int, allowed: Sequence[int] = tuple(BLOCKS_PER_STAGE)
                     ) -> tuple[int, int, int, int]:
    if depth not in allowed:
        raise InvalidArgument(f"depth={depth} is not available for this model; allowed: "
                              f"{', '.join(str(d) for d in allowed)}")
    return BLOCKS_PER_STAGE[depth]


def is_small_input(image_size: int) -> bool:
    return image_size <= SMALL_INPUT_MAX


def halved(side: int, times: int = 1) -> int:
    """A feature map's side after ``times`` padded stride-2 layers (3×3 conv or max-pool with
    padding 1, 7×7 with 3): ⌈side / 2⌉ each time."""
    for _ in range(times):
        side = (side + 1) // 2
    return side


BlockFactory = Callable[[int, int, bool, nn.Module], nn.Module]
"""``(in_channels, out_channels, reduces, nonlinear) -> block``; ``reduces`` for the first
block of every stage after the first (stride 2)."""


def build_stages(stage_blocks: Sequence[int], widths: Sequence[int], in_channels: int,
                 schedule: NonLinearitySchedule, block: BlockFactory) -> nn.Sequential:
    """The four stages: each block gets its non-linear module from ``schedule`` at its
    position, sized to the block's output channels."""
    stages: list[nn.Module] = []
    channels, index = in_channels, 0
    for stage, (length, width) in enumerate(zip(stage_blocks, widths, strict=True)):
        blocks = []
        for i in range(length):
            nonlinear = schedule.module_for(BlockPosition(index, stage, i, length), width)
            blocks.append(block(channels, width, stage > 0 and i == 0, nonlinear))
            channels, index = width, index + 1
        stages.append(nn.Sequential(*blocks))
    return nn.Sequential(*stages)


InputQuantizer = Callable[[int], nn.Module]
"""``channels -> binarizer``: a block's activation binarizer (larq's ``input_quantizer``)."""
ConvLayer = Callable[..., nn.Module]
"""``(in_channels, out_channels, kernel_size, stride=, padding=, groups=) -> binary conv``."""


@dataclass(frozen=True)
class BinaryParts:
    """The registered parts (:mod:`ftbnn_exp.nn.parts`) every binary block of a model is made
    of, by name, as a family's arguments give them (``model.binarizer=``, ``model.scaling=``);
    blocks receive :meth:`input_quantizer` and :meth:`conv_layer` as arguments, as
    torchvision's blocks receive ``norm_layer``. ``binarizer_options`` and ``conv_options``
    are the parts' own constructor arguments (``model.binarizer_options={t_min: 0.2}``)."""

    binarizer: str = "sign"
    scaling: str = "none"
    bound: float = DEFAULT_BOUND
    conv_options: Mapping[str, Any] = field(default_factory=dict, hash=False)
    binarizer_options: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        part("binarizer", self.binarizer, "model.binarizer").check_options(
            self.binarizer_options, "model.binarizer_options")
        part("scaling", self.scaling, "model.scaling").check_options(
            self.conv_options, "model.scaling_options")

    def input_quantizer(self, channels: int) -> nn.Module:
        return part("binarizer", self.binarizer).build(channels, bound=self.bound,
                                                       **self.binarizer_options)

    def conv_layer(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                   stride: int = 1, padding: int = 1, groups: int = 1,
                   output_size: tuple[int, int] | None = None) -> nn.Module:
        """A binary conv of the chosen scaling; ``output_size`` (H, W) reaches only a scaling
        with the ``spatial`` trait (XNOR-Net++'s row and column factors)."""
        entry = part("scaling", self.scaling)
        spatial = {"output_size": output_size} if entry.spatial else {}
        return entry.build(in_channels, out_channels, kernel_size, stride=stride,
                           padding=padding, groups=groups, bound=self.bound, **spatial,
                           **self.conv_options)


def binary_parts(binarizer: str, scaling: str, bound: float,
                 binarizer_options: Mapping[str, Any] | None,
                 scaling_options: Mapping[str, Any] | None) -> BinaryParts:
    """A family's part arguments as :class:`BinaryParts` (options ``None``: the defaults)."""
    for key, options in (("binarizer_options", binarizer_options),
                         ("scaling_options", scaling_options)):
        if not isinstance(options, Mapping | None):
            raise InvalidArgument(f"model.{key}={options!r} must be a mapping of the part's "
                                  "arguments, e.g. {t_min: 0.2}")
    return BinaryParts(binarizer, scaling, bound, dict(scaling_options or {}),
                       dict(binarizer_options or {}))


FTBNN_PARTS = BinaryParts()
"""The paper's parts: sign with the clipped STE, scale-free binary conv (§2.1, §3)."""
