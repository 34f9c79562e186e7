"""Model structure: non-linearity counts (Table 2/3), shapes for every data set, timm registry."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

from ftbnn_exp.data import DataSpec
from ftbnn_exp.models import bireal_resnet, derived_ftbnn, ftbnn_resnet, resnet_fp
from ftbnn_exp.nn import BinaryConv2d, FPReLU, NonLinearitySchedule, ScaledBinaryConv2d

SPECS = {
    "digits": DataSpec(8, 1, 10),
    "mnist": DataSpec(28, 1, 10),
    "cifar100": DataSpec(32, 3, 100),
    "imagenet": DataSpec(224, 3, 1000),
}
ROWS = {  # Table 3's schedules: (after the last block of a stage, after the others)
    "none": ("identity", "identity"),
    "prelu": ("prelu", "prelu"),
    "fprelu": ("fprelu", "fprelu"),
    "relu": ("relu", "relu"),
    "relu_partial": ("relu", "identity"),
    "relu_partial_prelu": ("relu", "prelu"),
    "relu_partial_fprelu": ("relu", "fprelu"),
}


def count(model: nn.Module, kind: type) -> int:
    return sum(type(m) is kind for m in model.modules())


def block_nonlinearities(model) -> list[str]:
    return [type(block.nonlinear).__name__ for stage in model.stages for block in stage]


def test_baseline_has_relu_after_blocks_4_8_12_16_and_fprelu_elsewhere():
    model = ftbnn_resnet(NonLinearitySchedule("relu", "fprelu"))
    assert count(model, nn.ReLU) == 4 and count(model, FPReLU) == 12
    kinds = block_nonlinearities(model)
    assert [i + 1 for i, k in enumerate(kinds) if k == "ReLU"] == [4, 8, 12, 16]  # Table 2


@pytest.mark.parametrize("row", ROWS)
def test_every_table3_row_places_its_modules(row):
    stage_end, other = ROWS[row]
    model = ftbnn_resnet(NonLinearitySchedule(stage_end, other))
    expected = {"relu": nn.ReLU, "prelu": nn.PReLU, "fprelu": FPReLU}
    wanted = {kind: 0 for kind in expected.values()}
    for kind, n in ((stage_end, 4), (other, 12)):
        if kind in expected:
            wanted[expected[kind]] += n
    assert {kind: count(model, kind) for kind in wanted} == wanted
    assert count(model, BinaryConv2d) == 16


def test_baseline_reduction_blocks_use_real_downsampling_shortcut():
    model = ftbnn_resnet(NonLinearitySchedule())
    shortcuts = [b.downsample for stage in model.stages for b in stage if b.downsample is not None]
    assert len(shortcuts) == 3
    for shortcut in shortcuts:
        assert [type(m) for m in shortcut] == [nn.AvgPool2d, nn.Conv2d, nn.BatchNorm2d]
        assert shortcut[1].kernel_size == (1, 1) and not isinstance(shortcut[1], BinaryConv2d)


def test_bireal_has_scaled_convs_and_no_explicit_nonlinearity():
    model = bireal_resnet()
    assert count(model, ScaledBinaryConv2d) == 16
    assert count(model, nn.ReLU) + count(model, nn.PReLU) + count(model, FPReLU) == 0


def test_stems_follow_input_size():
    big = ftbnn_resnet(NonLinearitySchedule())
    assert big.stem[0].kernel_size == (7, 7) and isinstance(big.stem[-1], nn.MaxPool2d)
    small = ftbnn_resnet(NonLinearitySchedule(), image_size=32)
    assert small.stem[0].kernel_size == (3, 3) and small.stem[0].stride == (1, 1)
    assert not any(isinstance(m, nn.MaxPool2d) for m in small.stem)


def test_resnet18_fp_is_torchvisions_with_11_69m_parameters():
    assert sum(p.numel() for p in resnet_fp().parameters()) == 11_689_512


BUILDERS = {
    "baseline": lambda s: ftbnn_resnet(NonLinearitySchedule(), 18, s.in_channels, s.num_classes,
                                       s.image_size),
    "bireal": lambda s: bireal_resnet(None, 18, s.in_channels, s.num_classes, s.image_size),
    "resnet18_fp": lambda s: resnet_fp(18, s.in_channels, s.num_classes, s.image_size),
    "derived": lambda s: derived_ftbnn(NonLinearitySchedule(), 64, 18, 4, s.in_channels,
                                       s.num_classes, s.image_size),
}


@pytest.mark.parametrize("data", SPECS)
@pytest.mark.parametrize("model", BUILDERS)
def test_output_shape_for_every_model_and_data(model, data):
    spec = SPECS[data]
    net = BUILDERS[model](spec).eval()
    with torch.no_grad():
        out = net(torch.randn(2, spec.in_channels, spec.image_size, spec.image_size))
    assert out.shape == (2, spec.num_classes)


def test_timm_registry_builds_our_models():
    model = timm.create_model("ftbnn_resnet18", num_classes=10, image_size=32)
    assert count(model, FPReLU) == 12
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    assert "ftbnn_derived34" in timm.list_models("ftbnn_*")
    with pytest.raises(ValueError, match="pretrained"):
        timm.create_model("ftbnn_resnet18", pretrained=True)


def conv_widths(model: nn.Module) -> list[int]:
    return sorted({m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)})


@pytest.mark.parametrize("build", [
    lambda **kw: ftbnn_resnet(NonLinearitySchedule("relu", "fprelu"), 18, 3, 10, 32, **kw),
    lambda **kw: bireal_resnet(None, 18, 3, 10, 32, **kw),
    lambda **kw: resnet_fp(18, 3, 10, 32, **kw),
])
def test_width_narrows_every_stage_and_64_is_the_paper_model(build):
    """Table 3 on a CPU (conf/paper/table3_cifar10_cpu.yaml) narrows the rows: every conv and
    the FC shrink alike; width=64 builds the very model the default builds."""
    torch.manual_seed(0)
    default = build()
    torch.manual_seed(0)
    same = build(width=64)
    assert all(torch.equal(a, b) for a, b in zip(default.state_dict().values(),
                                                  same.state_dict().values(), strict=True))
    narrow = build(width=16)
    assert conv_widths(default) == [64, 128, 256, 512]
    assert conv_widths(narrow) == [16, 32, 64, 128]
    assert narrow.fc.in_features == 128
    assert narrow(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_narrow_fp_resnet_is_initialised_as_torchvision_does():
    narrow = resnet_fp(18, 3, 10, 224, width=16)
    conv = narrow.layer2[0].conv1  # Kaiming normal, fan_out: std sqrt(2 / (32 · 9))
    assert abs(conv.weight.std().item() - (2 / (32 * 9)) ** 0.5) < 0.01
    assert torch.equal(narrow.layer3[1].bn2.weight, torch.ones(64))


@pytest.mark.parametrize("width", [0, -16, 1.5, True])
def test_a_width_that_is_not_a_whole_number_is_refused(width):
    with pytest.raises(ValueError, match=r"model\.width"):
        ftbnn_resnet(NonLinearitySchedule(), width=width)
