"""Table 1's scaling parts against their papers' formulas, written out here: XNOR-Net's α and K,
XNOR-Net++'s learned Γ, Real-to-Bin's gating and IR-Net's Libra-PB; their counts and their
deploy forms (or the one-line refusal)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ftbnn_exp.complexity import count_complexity
from ftbnn_exp.deploy.layers import to_inference
from ftbnn_exp.errors import InvalidArgument
from ftbnn_exp.models import create
from ftbnn_exp.nn import (
    BinaryActivation,
    GatedBinaryConv2d,
    LibraBinaryConv2d,
    XNORConv2d,
    XNORPPConv2d,
    part_of,
)
from ftbnn_exp.nn.lean import binary_conv_bn


def _binary(conv, x):
    return F.conv2d(torch.sign(x), torch.sign(conv.weight), None, conv.stride, conv.padding)


def test_xnor_scales_by_alpha_and_the_k_map_of_the_real_input(generator):
    conv = XNORConv2d(4, 6, 3, stride=2, padding=1)
    real = torch.randn(2, 4, 7, 7, generator=generator)
    out = conv(torch.sign(real), real)
    alpha = conv.weight.abs().sum(dim=(1, 2, 3)) / (4 * 9)  # ‖W‖₁ / n
    a = real.abs().sum(dim=1, keepdim=True) / 4  # A: mean |x| over channels
    box = torch.full((1, 1, 3, 3), 1 / 9)  # k: the 3×3 window's average, zero padding
    k = F.conv2d(a, box, None, 2, 1)
    assert torch.allclose(out, _binary(conv, real) * alpha.view(1, -1, 1, 1) * k, atol=1e-5)
    # α passes its gradient (the 1/n term of §3.2), K none unless asked
    real.requires_grad_()
    conv(torch.sign(real).detach(), real).sum().backward()
    assert real.grad is None or not real.grad.any()
    conv.k_gradient = True
    conv(torch.sign(real).detach(), real).sum().backward()
    assert real.grad.abs().sum() > 0


def test_xnor_k_map_is_counted_as_the_paper_computes_it():
    conv = XNORConv2d(4, 6, 3, stride=2, padding=1)

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.binarize, self.conv, self.bn = BinaryActivation(), conv, nn.BatchNorm2d(6)

        def forward(self, x):
            return binary_conv_bn(x, self.binarize, self.conv, self.bn)

    model = Block()
    counted = count_complexity(model, (4, 8, 8), "macs")
    row = next(r for r in counted.layers if r.name == "conv")
    # C·H·W (channel mean) + H'·W'·k² (box filter) + 2·O·H'·W' (× K, × α)
    assert row.flops == 4 * 8 * 8 + 4 * 4 * 9 + 2 * 6 * 4 * 4
    assert row.bops == 6 * 4 * 4 * 4 * 9


def test_xnorpp_learns_gamma_and_folds_it_for_deployment(generator):
    conv = XNORPPConv2d(3, 5, 3)
    with torch.no_grad():
        conv.gamma.uniform_(0.5, 2.0)
    x = torch.sign(torch.randn(2, 3, 6, 6, generator=generator))
    out = conv(x)
    plain = _binary(conv, x)
    assert torch.allclose(out, plain * conv.gamma, atol=1e-6)
    upstream = torch.randn(out.shape, generator=generator)
    out.backward(upstream)
    assert torch.allclose(conv.gamma.grad, (upstream * plain).sum(dim=(0, 2, 3), keepdim=True),
                          atol=1e-4)
    assert torch.equal(part_of(conv).fused(conv), conv.gamma.detach().flatten())


def test_real_to_bin_gating_is_a_sigmoid_of_two_fcs_on_the_pooled_real_input(generator):
    conv = GatedBinaryConv2d(16, 8, 3, padding=1)
    with torch.no_grad():
        conv.squeeze.weight.abs_()  # hidden units open for a positive input: gradients flow
    real = torch.randn(2, 16, 5, 5, generator=generator) + 1
    out = conv(torch.sign(real), real)
    hidden = F.relu(real.mean(dim=(2, 3)) @ conv.squeeze.weight.T)  # 16 → 16/8 = 2
    gate = torch.sigmoid(hidden @ conv.expand.weight.T)
    assert conv.squeeze.weight.shape == (2, 16)
    assert torch.allclose(out, _binary(conv, real) * gate[:, :, None, None], atol=1e-5)
    out.sum().backward()
    assert conv.squeeze.weight.grad.abs().sum() > 0 and conv.expand.weight.grad.abs().sum() > 0


def test_libra_binarizes_balanced_weights_and_deploys_their_signs(generator):
    torch.manual_seed(0)
    conv = LibraBinaryConv2d(4, 3, 3, padding=1)
    with torch.no_grad():
        conv.weight.add_(0.3)  # a mean far from 0: sign(W) and sign(W − mean) now differ
    w = conv.weight.detach()
    centred = w - w.mean(dim=(1, 2, 3), keepdim=True)
    balanced = centred / centred.std(dim=(1, 2, 3), keepdim=True)
    shift = 2.0 ** torch.round(torch.log2(balanced.abs().mean(dim=(1, 2, 3), keepdim=True)))
    assert torch.equal(conv.binary_weight().detach(), torch.sign(balanced) * shift)
    assert not torch.equal(torch.sign(balanced), torch.sign(w))

    class Block(nn.Module):
        binary_pairs = (("conv", "bn"),)

        def __init__(self) -> None:
            super().__init__()
            self.binarize, self.conv, self.bn = BinaryActivation(), conv, nn.BatchNorm2d(3)

        def forward(self, x):
            return binary_conv_bn(x, self.binarize, self.conv, self.bn)

    block = Block().eval()
    x = torch.randn(2, 4, 6, 6, generator=generator)
    with torch.no_grad():
        assert torch.allclose(to_inference(block)(x), block(x), atol=1e-5)


@pytest.mark.parametrize(("scaling", "cls"), [("xnor", "XNORConv2d"),
                                              ("gated", "GatedBinaryConv2d")])
def test_input_dependent_scales_are_refused_by_the_export_in_one_line(scaling, cls):
    model = create({"family": "ftbnn_resnet", "kwargs": {
        "depth": 18, "in_channels": 1, "num_classes": 10, "image_size": 8, "scaling": scaling}})
    with pytest.raises(InvalidArgument) as refusal:
        to_inference(model)
    assert str(refusal.value) == (f"export has no form for {cls} at stages.0.0.conv "
                                  f"(part '{scaling}')")


@pytest.mark.parametrize("scaling", ["channel_mean", "xnor", "xnorpp", "gated", "libra"])
def test_every_scaling_trains_in_every_family(scaling, generator):
    for family, extra in (("ftbnn_resnet", {"depth": 18, "image_size": 8}),
                          ("derived_ftbnn", {"depth": 18, "image_size": 8, "width": 8,
                                             "groups": 2}),
                          ("fig2_net", {})):
        model = create({"family": family, "kwargs": {
            "in_channels": 1, "num_classes": 10, "scaling": scaling, **extra}})
        convs = [m for m in model.modules() if part_of(m) is not None
                 and part_of(m).kind == "scaling"]
        assert convs and all(part_of(c).name == scaling for c in convs), family
        model(torch.randn(2, 1, 8, 8, generator=generator)).sum().backward()
        assert all(c.weight.grad is not None and c.weight.grad.any() for c in convs), family
