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
    conv = XNORPPConv2d(3, 5, 3, factors=["channel"])
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


def test_xnorpp_gamma_is_alpha_beta_gamma_over_channels_rows_and_columns(generator):
    """XNOR-Net++'s Eq. 8: Γ_{o,h,w} = α_o β_h γ_w, each factor learned."""
    conv = XNORPPConv2d(3, 5, 3, output_size=(4, 6))
    with torch.no_grad():
        for factor in (conv.gamma, conv.gamma_h, conv.gamma_w):
            factor.uniform_(0.5, 2.0)
    x = torch.sign(torch.randn(2, 3, 4, 6, generator=generator))
    out, plain = conv(x), _binary(conv, x)
    gamma = conv.gamma.view(5, 1, 1) * conv.gamma_h.view(1, 4, 1) * conv.gamma_w.view(1, 1, 6)
    assert torch.allclose(out, plain * gamma, atol=1e-5)
    upstream = torch.randn(out.shape, generator=generator)
    out.backward(upstream)
    want_h = (upstream * plain * conv.gamma * conv.gamma_w).sum(dim=(0, 1, 3)).flatten()
    assert torch.allclose(conv.gamma_h.grad.flatten(), want_h.detach(), atol=1e-4)
    with pytest.raises(InvalidArgument, match="cannot"):  # no per-channel deploy form
        part_of(conv).fused(conv)


def _block(scaling: str, **options) -> tuple[nn.Module, XNORPPConv2d | None]:
    from ftbnn_exp.models.ftbnn import BasicBlock
    from ftbnn_exp.models.layout import binary_parts

    parts = binary_parts("sign", scaling, 1.2, None, options)
    block = BasicBlock(16, 16, 1, nn.Identity(), parts.input_quantizer,
                       lambda *a, **k: parts.conv_layer(*a, output_size=(6, 6), **k))
    block.conv.lean_backward = False
    return block, block.conv if scaling == "xnorpp" else None


def test_xnorpp_is_not_cancelled_by_the_blocks_batchnorm(generator):
    """On FTBNN's sign → conv → BN block, BN cancels a per-channel Γ (the old xnorpp trained
    the bnn network: its gradient ~1e-7); the row and column factors change the block's output
    and get a gradient of the order of the conv's own."""
    torch.manual_seed(0)
    plain, _ = _block("none")
    scaled, conv = _block("xnorpp")
    scaled.conv.weight.data.copy_(plain.conv.weight.data)
    with torch.no_grad():
        for factor in (conv.gamma, conv.gamma_h, conv.gamma_w):
            factor.uniform_(0.5, 2.0, generator=generator)
    x = torch.randn(8, 16, 6, 6, generator=generator)
    out = scaled(x)
    assert (out - plain(x)).abs().max() > 0.1
    upstream = torch.randn(out.shape, generator=generator)
    out.backward(upstream)
    spatial = torch.cat([conv.gamma_h.grad.flatten(), conv.gamma_w.grad.flatten()])
    assert spatial.abs().max() > 1e-2
    assert conv.gamma.grad.abs().max() < 1e-3 * spatial.abs().max()  # the channel factor: BN's


def test_xnorpp_in_real_to_bins_block_keeps_its_channel_factor(generator):
    """In Real-to-Bin's block (BN before the sign) no BN follows the conv: Γ's channel factor
    changes the output and learns."""
    from ftbnn_exp.models.ftbnn import PreNormBlock
    from ftbnn_exp.models.layout import binary_parts

    parts = binary_parts("sign", "xnorpp", 1.0, None, {"factors": ["channel"]})
    block = PreNormBlock(16, 16, 1, nn.PReLU(16), parts.input_quantizer, parts.conv_layer)
    x = torch.randn(8, 16, 6, 6, generator=generator)
    before = block(x).detach()
    with torch.no_grad():
        block.conv.gamma.mul_(2.0)
    out = block(x)
    assert (out - before).abs().max() > 0.1
    out.pow(2).sum().backward()
    assert block.conv.gamma.grad.abs().max() > 1e-2


def test_a_checkpoint_from_before_the_factorised_gamma_loads_exactly(generator):
    old = XNORPPConv2d(3, 5, 3, factors=["channel"])
    with torch.no_grad():
        old.gamma.uniform_(0.5, 2.0, generator=generator)
    new = XNORPPConv2d(3, 5, 3, output_size=(6, 6))
    new.load_state_dict(old.state_dict())
    x = torch.sign(torch.randn(2, 3, 6, 6, generator=generator))
    assert torch.equal(new(x), old(x))
    assert torch.equal(part_of(new).fused(new), old.gamma.detach().flatten())


def test_parts_scales_and_thresholds_get_no_weight_decay():
    """Γ and RSign's α are not pulled to 0 by the L2 term (no method states a decay on them);
    the real weights (stem, BN, FC, gating FCs) keep theirs."""
    from ftbnn_exp.training.optim import OptimizerSpec, parameter_groups

    model = create({"family": "ftbnn_resnet", "kwargs": {
        "in_channels": 1, "num_classes": 10, "image_size": 8, "binarizer": "rsign",
        "scaling": "xnorpp"}})
    groups = {g["name"]: g for g in parameter_groups(model, OptimizerSpec(weight_decay=1e-4))}
    undecayed = {id(p) for p in groups["part"]["params"]}
    assert groups["part"]["weight_decay"] == 0.0
    named = dict(model.named_parameters())
    wanted = {n for n in named if n.split(".")[-1] in ("gamma", "gamma_h", "gamma_w",
                                                        "threshold")}
    assert wanted and {n for n, p in named.items() if id(p) in undecayed} == wanted
    assert groups["real"]["weight_decay"] == 1e-4
    assert id(named["fc.weight"]) in {id(p) for p in groups["real"]["params"]}


def test_libra_puts_ede_on_the_weights_following_progress(generator):
    """IR-Net's code binarizes the balanced weights with the same EDE as the activations."""
    from ftbnn_exp.nn.binarizers import ede_schedule

    conv = LibraBinaryConv2d(3, 4, 3)
    conv.progress = 0.5
    weight = conv.binary_weight()
    weight.backward(torch.ones_like(weight))
    t, k = ede_schedule(0.5)
    centred = conv.weight.detach() - conv.weight.detach().mean(dim=(1, 2, 3), keepdim=True)
    std = centred.std(dim=(1, 2, 3), keepdim=True)
    balanced = centred / std
    # d/dŴ of k·tanh(t·Ŵ) times the bit-shift scale, then through the standardisation
    upstream = k * t * (1 - torch.tanh(t * balanced) ** 2) * conv.shift_scale()
    want = torch.autograd.functional.vjp(
        lambda w: (w - w.mean(dim=(1, 2, 3), keepdim=True))
        / (w - w.mean(dim=(1, 2, 3), keepdim=True)).std(dim=(1, 2, 3), keepdim=True),
        conv.weight.detach(), upstream)[1]
    assert torch.allclose(conv.weight.grad, want, atol=1e-5)
    ste = LibraBinaryConv2d(3, 4, 3, weight_estimator="ste")
    assert not torch.equal(ste.binary_weight(), torch.zeros(1))  # builds; its own estimator


def test_export_refuses_real_to_bins_block_in_one_line():
    model = create({"family": "ftbnn_resnet", "kwargs": {
        "in_channels": 1, "num_classes": 10, "image_size": 8, "block": "real2bin"}})
    with pytest.raises(InvalidArgument, match="normalises before its binary conv") as refusal:
        to_inference(model)
    assert "\n" not in str(refusal.value)


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
        options = {}
        if scaling == "xnorpp" and family == "fig2_net":  # any input size: no output size
            with pytest.raises(InvalidArgument, match="factors: \\[channel\\]"):
                create({"family": family, "kwargs": {"scaling": scaling}})
            options = {"scaling_options": {"factors": ["channel"]}}
        model = create({"family": family, "kwargs": {
            "in_channels": 1, "num_classes": 10, "scaling": scaling, **extra, **options}})
        convs = [m for m in model.modules() if part_of(m) is not None
                 and part_of(m).kind == "scaling"]
        assert convs and all(part_of(c).name == scaling for c in convs), family
        model(torch.randn(2, 1, 8, 8, generator=generator)).sum().backward()
        assert all(c.weight.grad is not None and c.weight.grad.any() for c in convs), family


def test_real_to_bins_block_is_bn_sign_conv_scale_module_then_the_add(generator):
    """Martinez et al.'s Fig. 1 (larq-zoo's half block): the module (PReLU) acts before the
    shortcut is added, the gate reads the normalised input."""
    from ftbnn_exp.models.ftbnn import PreNormBlock
    from ftbnn_exp.models.layout import binary_parts

    parts = binary_parts("sign", "gated", 1.0, None, None)
    block = PreNormBlock(16, 16, 1, nn.ReLU(), parts.input_quantizer, parts.conv_layer).eval()
    x = torch.randn(4, 16, 6, 6, generator=generator) - 3.0
    normed = block.bn(x)
    want = torch.relu(block.conv(torch.sign(normed), normed)) + x
    assert torch.equal(block(x), want)
