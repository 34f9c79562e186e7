"""The building blocks against Appendix E's reference code (§3, Fig. 3)."""

from __future__ import annotations

import copy
import re

import pytest
import torch
import torch.nn.functional as F

from ftbnn_exp.errors import InvalidArgument
from ftbnn_exp.nn import (
    BinaryActivation,
    BinaryConv2d,
    BlockPosition,
    FPReLU,
    NonLinearitySchedule,
    ScaledBinaryConv2d,
    reference,
    sign_ste,
)
from ftbnn_exp.nn.lean import saved_bytes


def _probe(generator: torch.Generator) -> torch.Tensor:
    x = 2.0 * torch.randn(4, 6, 5, 5, generator=generator)
    # Exactly on the boundary and exactly zero: where STE variants disagree.
    x[0, 0, 0, :4] = torch.tensor([1.2, -1.2, 0.0, 1.2000001])
    return x


def test_torch_clamp_passes_no_gradient_at_the_bound():
    """What "equals Appendix E's gradients exactly" rests on: torch 2.14 (pyproject's range)
    passes none at x = ±1.2; torch 2.13 passed 1 there, and Appendix E's code with it."""
    x = torch.tensor([1.2, -1.2, 1.19], requires_grad=True)
    torch.clamp(x, -1.2, 1.2).sum().backward()
    assert x.grad.tolist() == [0.0, 0.0, 1.0], f"torch {torch.__version__}"


def test_activation_ste_matches_appendix_e_exactly(generator):
    x = _probe(generator)
    upstream = torch.randn(x.shape, generator=generator)
    ours, ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_ours, out_ref = BinaryActivation()(ours), reference.Sign()(ref)
    (out_ours * upstream).sum().backward()
    (out_ref * upstream).sum().backward()
    # The detach trick computes sign(x) + c - c, which is sign(x) only up to rounding.
    assert torch.equal(out_ours, torch.sign(x))
    assert torch.allclose(out_ours, out_ref, rtol=0, atol=1e-6)
    assert torch.equal(ours.grad, ref.grad)
    assert out_ours[0, 0, 0, 2] == 0  # torch.sign(0) = 0 is kept (Appendix B)
    inside = x.abs() < 1.2
    assert torch.equal(ours.grad, upstream * inside)  # open range (-1.2, 1.2), §3
    assert ours.grad[0, 0, 0, 0] == 0 and ours.grad[0, 0, 0, 3] == 0


def test_ste_saves_only_a_boolean_mask(generator):
    saved = []
    x = torch.randn(3, 4, generator=generator, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        sign_ste(x)
    assert [t.dtype for t in saved] == [torch.bool]


def test_binary_conv_matches_appendix_e_exactly(generator):
    for stride, groups in ((1, 1), (2, 2), (1, 3)):
        conv = BinaryConv2d(6, 6, 3, stride=stride, padding=1, groups=groups)
        with torch.no_grad():
            conv.weight[0, 0, 0, :3] = torch.tensor([1.2, -1.2, 0.0])
        weights = conv.weight.detach().clone().requires_grad_()
        x = torch.sign(_probe(generator))
        upstream = torch.randn_like(conv(x))
        (conv(x) * upstream).sum().backward()
        expected = F.conv2d(x, reference.binary_weights(weights), stride=stride, padding=1,
                            groups=groups)
        (expected * upstream).sum().backward()
        assert torch.equal(conv(x), F.conv2d(x, torch.sign(conv.weight), stride=stride,
                                             padding=1, groups=groups))
        assert torch.allclose(conv(x), expected, rtol=0, atol=1e-4)
        assert torch.equal(conv.weight.grad, weights.grad)


def test_binary_conv_init_and_no_bias():
    torch.manual_seed(0)
    conv = BinaryConv2d(64, 64)
    fan = 64 * 9
    expected_std = 2.0 * (2.0 / (fan + fan)) ** 0.5  # xavier_normal_ with gain 2 (Appendix E)
    assert conv.bias is None
    assert abs(conv.weight.std().item() - expected_std) / expected_std < 0.02


@pytest.mark.parametrize("scale_gradient", [False, True])
def test_scaled_conv_is_plain_conv_times_channel_mean_abs(generator, scale_gradient):
    conv = ScaledBinaryConv2d(4, 5, scale_gradient=scale_gradient)
    plain = BinaryConv2d(4, 5)
    plain.weight = conv.weight
    x = torch.sign(torch.randn(2, 4, 6, 6, generator=generator))
    scale = conv.weight.abs().mean(dim=(1, 2, 3)).view(1, -1, 1, 1)
    assert torch.allclose(conv(x), plain(x) * scale, atol=1e-5)


def test_scaled_conv_gradients_equal_bireals_reference_code(generator):
    """Bi-Real Net's ``HardBinaryConv``: ``scaling_factor.detach()``, then
    ``(α·sign(W)).detach() - clip(W).detach() + clip(W)`` (clip at our bound, §3)."""
    conv = ScaledBinaryConv2d(4, 5)
    w = conv.weight.detach().clone().requires_grad_(True)
    with torch.no_grad():
        w[0, 0, 0, :3] = torch.tensor([1.2, -1.2, 0.0])  # the STE's edges, as Appendix E's
        conv.weight.copy_(w)
    x = torch.sign(torch.randn(2, 4, 6, 6, generator=generator)).requires_grad_(True)
    upstream = torch.randn(2, 5, 6, 6, generator=generator)
    (conv(x) * upstream).sum().backward()
    alpha = w.abs().mean(dim=(1, 2, 3), keepdim=True).detach()
    clipped = torch.clamp(w, -1.2, 1.2)
    reference = (alpha * torch.sign(w)).detach() - clipped.detach() + clipped
    x_ref = x.detach().clone().requires_grad_(True)
    (F.conv2d(x_ref, reference, padding=1) * upstream).sum().backward()
    assert torch.equal(conv.weight.grad, w.grad)
    assert torch.allclose(x.grad, x_ref.grad, atol=1e-6)
    scaled = ScaledBinaryConv2d(4, 5, scale_gradient=True)
    scaled.weight.data.copy_(w.detach())
    (scaled(x.detach()) * upstream).sum().backward()
    assert not torch.allclose(scaled.weight.grad, w.grad)  # the other, documented choice


def test_fprelu_starts_as_identity_and_learns_both_slopes(generator):
    act = FPReLU(3)
    x = torch.randn(2, 3, 4, 4, generator=generator)
    assert torch.equal(act(x), x)
    act(x).sum().backward()
    assert torch.equal(act.positive.grad.flatten(), x.clamp(min=0).sum(dim=(0, 2, 3)))
    assert torch.equal(act.negative.grad.flatten(), torch.where(x > 0, 0, x).sum(dim=(0, 2, 3)))


def test_a_schedule_places_any_number_of_modules_first_rule_first():
    positions = [BlockPosition(i, i // 4, i % 4, 4) for i in range(8)]
    schedule = NonLinearitySchedule("relu", "fprelu", extra=(
        {"module": "prelu", "placement": "period", "period": 2},
        {"module": "identity", "placement": "period", "period": 3}))
    # relu at stage ends (3, 7), prelu at the other even blocks (1, 5), identity at 2, fprelu
    assert [schedule.kind_for(p) for p in positions] == [
        "fprelu", "prelu", "identity", "relu", "fprelu", "prelu", "fprelu", "relu"]
    again = NonLinearitySchedule.from_value(schedule.to_dict())
    assert again == schedule and again.to_dict() == schedule.to_dict()
    assert [r.placement_args for r in again.extra] == [{"period": 2}, {"period": 3}]


def test_a_spec_written_before_the_rename_still_reads():
    legacy = NonLinearitySchedule.from_value({"stage_end": "relu", "other": "prelu",
                                              "placement": "stage_end", "placement_args": {}})
    assert (legacy.placed, legacy.elsewhere, legacy.extra) == ("relu", "prelu", ())


def test_schedule_stage_end_and_period():
    positions = [BlockPosition(i, i // 6, i % 6, 6) for i in range(12)]
    stage_end = NonLinearitySchedule("relu", "fprelu")
    kinds = [stage_end.kind_for(p) for p in positions]
    assert kinds == ["fprelu"] * 5 + ["relu"] + ["fprelu"] * 5 + ["relu"]
    period = NonLinearitySchedule("relu", "identity", placement="period",
                                  placement_args={"period": 4})
    assert [period.kind_for(p) for p in positions[:8]] == (["identity"] * 3 + ["relu"]) * 2


@pytest.mark.parametrize(("schedule", "message"), [
    ({"placed": "tanh"}, "nonlinearity.placed='tanh' is not a registered non-linear "
                         "module; allowed: fprelu, hardtanh, identity, prelu, relu"),
    ({"extra": [{"module": "tanh", "placement": "period"}]},
     "nonlinearity.extra[0].module='tanh' is not a registered non-linear module"),
    ({"extra": [{"module": "relu"}]}, "nonlinearity.extra[0]={'module': 'relu'} must be "
                                      "{module: <registered non-linear module>, placement:"),
    ({"extra": [{"module": "relu", "placement": "period", "every": 2}]},
     "nonlinearity.extra[0].every is not a parameter of placement=period; allowed: period"),
    ({"extra": {"module": "relu", "placement": "period"}}, "nonlinearity.extra must be a list"),
    ({"placement": "nowhere"}, "placement=nowhere is not registered; allowed: period, stage_end"),
    ({"placement_args": {"period": 2}}, "placement.period is not a parameter of "
                                        "placement=stage_end; allowed: none"),
])
def test_schedule_refuses_what_no_registry_holds(schedule, message):
    with pytest.raises(InvalidArgument, match=re.escape(message)):
        NonLinearitySchedule(**schedule)


def _block_pair(schedule_kind: str = "fprelu"):
    from ftbnn_exp.models.ftbnn import BasicBlock
    from ftbnn_exp.nn import make_nonlinear_module

    block = BasicBlock(8, 8, 1, make_nonlinear_module(schedule_kind, 8))
    return block, reference.with_appendix_e_layers(block)


def test_lean_block_gradients_and_running_stats_equal_the_plain_graph(generator):
    for stride, groups, momentum in ((1, 1, 0.1), (2, 1, None), (1, 2, 0.1)):
        from ftbnn_exp.models.derived import NormalBlock, ReductionBlock
        from ftbnn_exp.nn import make_nonlinear_module

        block = (ReductionBlock(4, groups, make_nonlinear_module("fprelu", 8)) if stride == 2
                 else NormalBlock(4, groups, make_nonlinear_module("fprelu", 4)))
        block.bn.momentum = momentum
        plain = copy.deepcopy(block)
        plain.conv.lean_backward = False
        x = _probe(generator)[:, :4]
        for model in (block, plain):
            inputs = x.clone().requires_grad_()
            for _ in range(2):  # twice: the running statistics' bookkeeping too
                out = model(inputs)
            (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
            model.grad_of_input = inputs.grad
        assert torch.equal(block.grad_of_input, plain.grad_of_input)
        for (name, a), b in zip(block.named_parameters(), plain.parameters(), strict=True):
            assert torch.equal(a.grad, b.grad), name
        for a, b in zip(block.buffers(), plain.buffers(), strict=True):
            assert torch.equal(a, b)


@pytest.mark.parametrize("stride", [1, 2])
def test_lean_block_under_bf16_autocast_equals_the_plain_graph_under_it(generator, stride):
    """trainer=gpu's bf16-mixed: the lean path runs (its saving holds) and its gradients and
    statistics equal the plain graph's under the same autocast, bit for bit."""
    from ftbnn_exp.models.derived import NormalBlock, ReductionBlock
    from ftbnn_exp.nn import make_nonlinear_module

    block = (ReductionBlock(8, 1, make_nonlinear_module("fprelu", 16)) if stride == 2
             else NormalBlock(8, 2, make_nonlinear_module("fprelu", 8)))
    plain = copy.deepcopy(block)
    plain.conv.lean_backward = False
    x = torch.randn(4, 8, 8, 8, generator=generator)
    upstream = None
    for model in (block, plain):
        inputs = x.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(inputs)
            saved = saved_bytes(lambda m=model: m(x.clone().requires_grad_()))
        upstream = torch.randn(out.shape, generator=generator) if upstream is None else upstream
        (out.float() * upstream).sum().backward()
        model.results = inputs.grad, saved
    assert torch.equal(block.results[0], plain.results[0])
    assert block.results[0].abs().sum() > 0
    for (name, a), b in zip(block.named_parameters(), plain.parameters(), strict=True):
        assert a.grad is not None and torch.equal(a.grad, b.grad), name
    for a, b in zip(block.buffers(), plain.buffers(), strict=True):
        assert torch.equal(a, b)
    assert block.results[1] < plain.results[1]  # the int8 code, not the bf16 conv input


def test_lean_block_keeps_one_byte_per_input_and_four_per_output(generator):
    block, ref = _block_pair()

    def per_element(model) -> float:
        """Saved bytes per activation element: the growth from batch 2 to batch 4, so that
        weight-sized tensors cancel out."""
        sizes = [saved_bytes(lambda n=n: model(torch.randn(n, 8, 6, 6, generator=generator,
                                                             requires_grad=True)))
                 for n in (2, 4)]
        return (sizes[1] - sizes[0]) / (2 * 8 * 6 * 6)

    # Ours: the int8 code of x and FPReLU's float input.
    assert per_element(block) == 1 + 4
    # Appendix E: clamp's input, the conv's float input, BN's input, where's mask, FPReLU's input.
    assert per_element(ref) == 4 + 4 + 4 + 1 + 4


def test_fprelu_gradients_equal_appendix_e(generator):
    act = FPReLU(3)
    with torch.no_grad():
        act.negative.uniform_(-1, 1, generator=generator)
        act.positive.uniform_(-1, 1, generator=generator)
    ref = reference.ReferenceFPReLU(act)
    x = torch.randn(2, 3, 4, 4, generator=generator)
    x[0, 0, 0, 0] = 0.0
    upstream = torch.randn(x.shape, generator=generator)
    ours, theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    (act(ours) * upstream).sum().backward()
    (ref(theirs) * upstream).sum().backward()
    assert torch.equal(act(x), ref(x))
    assert torch.equal(ours.grad, theirs.grad)
    assert torch.equal(act.negative.grad, ref.l_weights.grad)
    assert torch.equal(act.positive.grad, ref.r_weights.grad)
