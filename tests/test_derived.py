"""The derived models' structure, part by part (§2.2-2.3, Fig. 3-4): the stem, the bridge, the
group count of every binary conv, the copy-and-paste reduction and the ReLU positions."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ftbnn_exp.models import derived_ftbnn
from ftbnn_exp.models.derived import (
    STEM_CHANNELS,
    BridgeBlock,
    InitialBlock,
    NormalBlock,
    ReductionBlock,
)
from ftbnn_exp.models.layout import BLOCKS_PER_STAGE
from ftbnn_exp.nn import BinaryActivation, BinaryConv2d, FPReLU, NonLinearitySchedule

GROUPS = (1, 2, 3, 5, 8)


def test_initial_block_is_a_real_3x3_conv_to_32_channels():
    big = InitialBlock(3, small_input=False)
    conv, bn, pool = big
    assert type(conv) is nn.Conv2d and (conv.in_channels, conv.out_channels) == (3, 32)
    assert conv.kernel_size == (3, 3) and conv.stride == (2, 2) and STEM_CHANNELS == 32
    assert isinstance(bn, nn.BatchNorm2d) and isinstance(pool, nn.MaxPool2d)
    assert pool.kernel_size == 3 and pool.stride == 2
    small = InitialBlock(1, small_input=True)
    assert len(small) == 2 and small[0].stride == (1, 1)


@pytest.mark.parametrize("groups", GROUPS)
def test_bridge_is_a_dense_binary_conv_from_32_to_the_width(groups):
    model = derived_ftbnn(NonLinearitySchedule(), 40 * groups, 18, groups)
    assert isinstance(model.bridge, BridgeBlock)
    binarize, conv, bn = model.bridge
    assert isinstance(binarize, BinaryActivation) and isinstance(bn, nn.BatchNorm2d)
    assert type(conv) is BinaryConv2d and conv.groups == 1 and conv.kernel_size == (3, 3)
    assert (conv.in_channels, conv.out_channels) == (32, 40 * groups)


@pytest.mark.parametrize("depth", sorted(BLOCKS_PER_STAGE))
@pytest.mark.parametrize("groups", GROUPS)
def test_every_binary_conv_has_its_group_count(depth, groups):
    width = 8 * groups * 5
    model = derived_ftbnn(NonLinearitySchedule(), width, depth, groups)
    blocks = [block for stage in model.stages for block in stage]
    layout = BLOCKS_PER_STAGE[depth]
    reductions = [i for i, block in enumerate(blocks) if isinstance(block, ReductionBlock)]
    assert reductions == [sum(layout[:s]) for s in (1, 2, 3)]
    expected_reduction = 2 if groups <= 2 else groups
    for i, block in enumerate(blocks):
        assert block.conv.groups == (expected_reduction if i in reductions else groups), i
        assert block.conv.weight.shape[1] == block.conv.in_channels // block.conv.groups
    widths = [stage[0].conv.out_channels for stage in model.stages]
    assert widths == [width, 2 * width, 4 * width, 8 * width]
    convs = [m for m in model.modules() if isinstance(m, BinaryConv2d)]
    assert len(convs) == 1 + sum(layout)  # the bridge and one per block


def test_reduction_block_concatenates_and_pools_its_shortcut_3x3_stride_2():
    torch.manual_seed(0)
    block = ReductionBlock(6, 3, nn.Identity()).eval()
    x = torch.randn(2, 6, 9, 9)
    seen = []
    block.conv.register_forward_hook(lambda module, args, out: seen.append(args[0]))
    with torch.no_grad():
        block.conv.weight.zero_()  # sign(0) = 0: the conv adds nothing, the shortcut remains
        out = block(x)
    pooled = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
    assert torch.equal(out, torch.cat([pooled, pooled], dim=1))
    assert torch.equal(seen[0], torch.sign(torch.cat([x, x], dim=1)))
    conv = block.conv
    assert conv.stride == (2, 2) and (conv.in_channels, conv.out_channels) == (12, 12)


def test_normal_block_adds_its_input():
    block = NormalBlock(6, 3, nn.Identity()).eval()
    x = torch.randn(2, 6, 5, 5)
    with torch.no_grad():
        block.conv.weight.zero_()
        assert torch.equal(block(x), x)


@pytest.mark.parametrize(("depth", "groups"), [(18, 1), (34, 5), (44, 8)])
def test_relu_after_the_last_block_of_every_stage_fprelu_elsewhere(depth, groups):
    model = derived_ftbnn(NonLinearitySchedule("relu", "fprelu"), 16 * groups, depth, groups)
    kinds = [type(b.nonlinear) for stage in model.stages for b in stage]
    ends = [sum(BLOCKS_PER_STAGE[depth][:s + 1]) - 1 for s in range(4)]
    assert [i for i, kind in enumerate(kinds) if kind is nn.ReLU] == ends
    assert all(kind is FPReLU for i, kind in enumerate(kinds) if i not in ends)
    assert not isinstance(model.bridge[-1], nn.ReLU | FPReLU)
