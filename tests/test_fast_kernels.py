"""The C++ bit-packed kernels: every instruction-set path this CPU has is bit-exact against the
reference engine, raw and with the output step fused. Skipped, with the reason, where no
compiler can build them (the package then uses the reference)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ftbnn_exp.deploy import fast
from ftbnn_exp.deploy.bitops import binary_conv2d, pack_weights
from ftbnn_exp.deploy.layers import FoldedBatchNorm2d, PackedBinaryConv2d
from ftbnn_exp.nn import BinaryConv2d, FPReLU

pytestmark = pytest.mark.skipif(fast.kernels() is None, reason="no C++ toolchain here")
PATHS = [p for p in fast.PATHS if fast.kernels() is not None and p in fast.supported_paths()]
# (in, out, stride, groups, size): the binary convs of the baseline, Bi-Real and derived models,
# with 1, 2 and 3 words per pixel (the AVX-512BW window code has its own case for each)
SHAPES = [(64, 64, 1, 1, 9), (64, 128, 2, 1, 9), (130, 70, 1, 1, 6), (48, 48, 1, 3, 7),
          (40, 40, 2, 8, 8), (32, 198, 1, 1, 5), (100, 40, 1, 1, 7)]


def _conv(cin: int, cout: int, stride: int, groups: int, generator, zero: bool = False):
    conv = BinaryConv2d(cin, cout, 3, stride=stride, padding=1, groups=groups)
    with torch.no_grad():
        conv.weight.normal_(generator=generator)
        if zero:
            conv.weight[0, 0, 0, 0] = 0.0
    return conv, PackedBinaryConv2d.from_conv(conv)


def _input(kind: str, channels: int, size: int, generator) -> torch.Tensor:
    x = torch.randn(2, channels, size, size, generator=generator)
    if kind == "relu":
        x = x.relu()
    elif kind == "zeros":
        x[0, 0, :2] = 0.0
    return torch.sign(x)


def test_this_cpu_reports_its_paths():
    assert PATHS and PATHS[0] == "popcnt"
    assert fast.PATHS[fast.best_path()] == PATHS[-1]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("kind", ["bipolar", "relu", "zeros", "zero-weight"])
@pytest.mark.parametrize(("cin", "cout", "stride", "groups", "size"), SHAPES)
def test_every_path_is_bit_exact(path, kind, cin, cout, stride, groups, size, generator):
    conv, packed = _conv(cin, cout, stride, groups, generator, zero=kind == "zero-weight")
    x = _input("bipolar" if kind == "zero-weight" else kind, cin, size, generator)
    expected = binary_conv2d(x, *pack_weights(conv.weight.detach()), 3, stride, 1, groups)
    (got,) = fast.FastBinaryConv(packed, fast.PATHS.index(path))(x)
    assert torch.equal(got, expected)


def _check_fused(path, nonlinear, shape, generator, channels_last=False):
    cin, cout, stride, groups, size, next_groups = shape
    conv, packed = _conv(cin, cout, stride, groups, generator)
    bn = nn.BatchNorm2d(cout).eval()
    with torch.no_grad():
        bn.running_mean.uniform_(-20, 20, generator=generator)
        bn.running_var.uniform_(1, 50, generator=generator)
        bn.weight.uniform_(0.5, 1.5, generator=generator)
    folded = FoldedBatchNorm2d.fold(bn)
    module = {"identity": nn.Identity(), "relu": nn.ReLU(), "fprelu": FPReLU(cout),
              "prelu": nn.PReLU(cout)}[nonlinear]
    if nonlinear == "fprelu":
        with torch.no_grad():
            module.negative.uniform_(-1, 1, generator=generator)
    x = _input("bipolar", cin, size, generator)
    out_size = (size - 1) // stride + 1
    residual = torch.randn(2, cout, out_size, out_size, generator=generator)
    if channels_last:
        x, residual = (t.contiguous(memory_format=torch.channels_last) for t in (x, residual))
    kernel = fast.FastBinaryConv(packed, fast.PATHS.index(path)).fuse(folded, module,
                                                                       next_groups)
    out, signs, nonzero, counts = kernel(x, residual=residual)
    with torch.no_grad():
        z = F.conv2d(x, conv.weight.sign(), stride=stride, padding=1, groups=groups)
        expected = module(folded(z) + residual)
    assert torch.equal(out, expected)
    want_signs, want_nonzero, _ = kernel.conv.ops.pack_nhwc(expected, next_groups)
    assert torch.equal(signs, want_signs) and torch.equal(nonzero, want_nonzero)
    assert counts.tolist() == [int((expected < 0).sum()), int((expected == 0).sum())]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("nonlinear", ["identity", "relu", "fprelu", "prelu"])
def test_fused_output_equals_pytorch_and_packs_the_next_input(path, nonlinear, generator):
    _check_fused(path, nonlinear, (64, 64, 1, 1, 9, 2), generator)


# (in, out, stride, groups, size, next groups): channels in 16s or not (the one-pass AVX-512
# output step or the general one), next groups with partial words, grouped convs
FUSED_SHAPES = [(64, 64, 1, 1, 9, 1), (64, 128, 2, 1, 9, 1), (130, 70, 1, 1, 6, 2),
                (48, 48, 1, 3, 7, 3), (40, 40, 2, 8, 8, 8), (96, 96, 1, 1, 5, 2)]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("shape", FUSED_SHAPES)
def test_fused_output_is_exact_for_every_layout(path, shape, generator):
    _check_fused(path, "fprelu", shape, generator, channels_last=True)


def test_fast_baseline_predicts_as_the_exported_model(generator):
    from ftbnn_exp.deploy.layers import to_inference
    from ftbnn_exp.models import ftbnn_resnet
    from ftbnn_exp.nn import NonLinearitySchedule

    # 96 px: the ImageNet stem, max-pool included
    model = ftbnn_resnet(NonLinearitySchedule("relu", "fprelu"), 18, num_classes=10,
                         image_size=96).eval()
    inference = to_inference(model)
    x = torch.randn(2, 3, 96, 96, generator=generator)
    with torch.no_grad():
        reference = inference(x)
    for path in PATHS:
        assert torch.equal(fast.FastFTBNN(inference, fast.PATHS.index(path))(x), reference)
    accelerated = fast.accelerate(to_inference(model))
    with torch.no_grad():
        assert torch.equal(accelerated(x), reference)
