"""The parts registry ends the silent couplings of issue 23: the lean path, the export's
conv/BN pairing and the fused runner each follow a part's declared traits, and a part without
the trait is run exactly another way or refused in one line."""

from __future__ import annotations

import copy
import re

import pytest
import torch
from torch import Tensor, nn

from ftbnn_exp.deploy import fast
from ftbnn_exp.deploy.__main__ import main as deploy_main
from ftbnn_exp.deploy.layers import PackedBinaryConv2d, to_inference
from ftbnn_exp.errors import InvalidArgument
from ftbnn_exp.models import create
from ftbnn_exp.models.ftbnn import BasicBlock
from ftbnn_exp.nn import (
    PARTS,
    BinaryActivation,
    BinaryConv2d,
    FusedBinarizer,
    part,
    register_part,
    sign_ste,
)
from ftbnn_exp.nn import parts as parts_module
from ftbnn_exp.nn.lean import lean_applies


class Thresholded(BinaryActivation):
    """sign(x − t) with a learned per-channel threshold t (ReActNet's RSign, as a user writes
    it): the subclass keeps ``mode == "sign"``, the case the lean path used to get wrong."""

    def __init__(self, channels: int = 0, bound: float = 1.2) -> None:
        super().__init__(channels, bound)
        self.threshold = nn.Parameter(torch.linspace(-0.5, 0.5, channels).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return sign_ste(x - self.threshold, self.bound)


@pytest.fixture
def registry(monkeypatch):
    """Registrations made by a test are undone after it."""
    monkeypatch.setattr(parts_module, "_BY_CLASS", dict(parts_module._BY_CLASS))
    for kind in PARTS:
        monkeypatch.setitem(PARTS, kind, dict(PARTS[kind]))


def _train_step(block: nn.Module, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    x = x.clone().requires_grad_()
    out = block(x)
    (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    grads = {name: p.grad.clone() for name, p in block.named_parameters()}
    return out.detach(), {**grads, "input": x.grad}


@pytest.mark.parametrize("quantizer", [BinaryActivation, Thresholded])
def test_the_lean_path_equals_the_plain_graph_for_any_binarizer(quantizer, generator):
    torch.manual_seed(0)
    lean = BasicBlock(8, 8, 1, nn.Identity(), input_quantizer=quantizer)
    plain = copy.deepcopy(lean)
    plain.conv.lean_backward = False
    x = torch.randn(4, 8, 6, 6, generator=generator)
    out, grads = _train_step(lean, x)
    expected, expected_grads = _train_step(plain, x)
    assert torch.equal(out, expected)
    assert grads.keys() == expected_grads.keys()
    for name, grad in grads.items():
        assert torch.allclose(grad, expected_grads[name], atol=1e-6), name
    taken = lean_applies(lean.binarize, lean.conv, lean.bn, x)
    assert taken == (quantizer is BinaryActivation)  # the lean path where it is exact only
    if quantizer is Thresholded:
        assert grads["binarize.threshold"].abs().sum() > 0


class TwoConvs(nn.Module):
    """Two binary convs declared before their BNs, in the other order: conv3, conv1, bn3, bn1
    (pairing by declaration order would fold conv3 with bn1 and leave conv1 unpacked)."""

    binary_pairs = (("conv3", "bn3"), ("conv1", "bn1"))

    def __init__(self) -> None:
        super().__init__()
        self.binarize = BinaryActivation()
        self.conv3 = BinaryConv2d(4, 6, 3)
        self.conv1 = BinaryConv2d(6, 5, 1, padding=0)
        self.bn3, self.bn1 = nn.BatchNorm2d(6), nn.BatchNorm2d(5)

    def forward(self, x: Tensor) -> Tensor:
        y = self.bn3(self.conv3(self.binarize(x)))
        return self.bn1(self.conv1(self.binarize(y)))


def _trained_bn(model: nn.Module) -> nn.Module:
    for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
        with torch.no_grad():
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
    return model.eval()


def test_the_export_pairs_each_conv_with_the_bn_its_block_declares(generator):
    torch.manual_seed(0)
    model = _trained_bn(TwoConvs())
    inference = to_inference(model)
    assert isinstance(inference.conv3, PackedBinaryConv2d)
    assert isinstance(inference.conv1, PackedBinaryConv2d)
    x = torch.randn(2, 4, 5, 5, generator=generator)
    with torch.no_grad():
        assert torch.allclose(inference(x), model(x), atol=1e-5)


def test_a_binary_conv_without_a_declared_partner_is_refused_in_one_line():
    class Undeclared(TwoConvs):
        binary_pairs = (("conv3", "bn3"),)

    with pytest.raises(InvalidArgument, match=r"binary conv 'conv1' of Undeclared has no "
                                              r"declared BN partner"):
        to_inference(Undeclared())

    class Swapped(TwoConvs):
        binary_pairs = (("conv3", "bn3"), ("bn1", "conv1"))

    with pytest.raises(InvalidArgument, match="which are not a binary conv and a BatchNorm2d"):
        to_inference(Swapped())


def test_a_part_outside_the_registry_has_no_traits():
    assert parts_module.part_of(Thresholded(4)) is None  # a subclass inherits nothing
    with pytest.raises(InvalidArgument, match=r"no form for Thresholded at stages.0.0.binarize "
                                              r"\(not a registered part\)"):
        fast.check_binarizer(Thresholded(4), "stages.0.0.binarize")
    with pytest.raises(InvalidArgument, match=r"model.binarizer='rsgn' is not a registered "
                                              r"binarizer; allowed: .*sign"):
        part("binarizer", "rsgn", "model.binarizer")


@pytest.mark.skipif(fast.kernels() is None, reason="no C++ toolchain here")
def test_the_fused_runner_refuses_a_binarizer_it_cannot_pack_and_runs_it_exactly(registry):
    register_part("binarizer", "test_threshold", label="sign(x − t)",
                  fused=lambda m: FusedBinarizer(m.threshold.detach().flatten()))(Thresholded)
    torch.manual_seed(0)
    model = _trained_bn(create({"family": "ftbnn_resnet", "kwargs": {
        "depth": 18, "in_channels": 1, "num_classes": 10, "image_size": 8,
        "binarizer": "test_threshold"}}))
    inference = to_inference(model)
    runner, how = fast.fastest(inference, "ftbnn_resnet")
    assert how == ("C++ binary convs (fell back from ftbnn_resnet's fused runner: the fused "
                   "runner packs sign(x) only; Thresholded at stages.0.0.binarize binarizes at "
                   "a learned threshold)")
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(runner(x), inference(x))
    # The same model with the paper's binarizer is fused whole.
    plain = to_inference(_trained_bn(create({"family": "ftbnn_resnet", "kwargs": {
        "depth": 18, "in_channels": 1, "num_classes": 10, "image_size": 8}})))
    assert fast.fastest(plain, "ftbnn_resnet")[1] == "fused blocks (ftbnn_resnet's runner)"


def test_deploy_bench_never_times_a_runner_that_differs(monkeypatch, capsys):
    """What ``verify`` would call different is refused by ``bench`` before any timing."""
    def wrong(inference, family, path=None, stem_precision="fp32"):
        return (lambda x: inference(x) + 1), "broken runner"

    monkeypatch.setattr(fast, "fastest", wrong)
    checkpoint = "tests/data/legacy-0.1.0-fig2.ckpt"
    assert deploy_main(["bench", checkpoint, "--repeats", "1", "--threads", "1"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: deploy bench: the broken runner runner's logits differ from the reference "
        "engine's; not timed (`deploy verify` shows where)")


def test_each_part_declares_the_options_a_user_may_give_it():
    assert part("binarizer", "ede").options() == ("t_min", "t_max")
    assert part("binarizer", "sign").options() == ()  # mode is set by multi-step training
    assert part("scaling", "gated").options() == ("reduction",)
    assert part("scaling", "xnor").options() == ("k_gradient",)
    assert part("scaling", "channel_mean").options() == ("scale_gradient",)
    assert part("nonlinear", "prelu").options() == ()


@pytest.mark.parametrize("family", ["ftbnn_resnet", "bireal_resnet", "derived_ftbnn",
                                    "fig2_net"])
def test_every_family_passes_the_parts_options_on(family):
    kwargs = {"in_channels": 1, "num_classes": 10, "binarizer": "ede", "scaling": "gated",
              "binarizer_options": {"t_min": 0.25, "t_max": 4.0},
              "scaling_options": {"reduction": 2}}
    if family != "fig2_net":
        kwargs.update(depth=18, image_size=8)
    if family == "derived_ftbnn":
        kwargs["width"] = 16
    model = create({"family": family, "kwargs": kwargs})
    binarizers = [m for m in model.modules() if type(m).__name__ == "EDE"]
    gates = [m for m in model.modules() if type(m).__name__ == "GatedBinaryConv2d"]
    assert binarizers and {(b.t_min, b.t_max) for b in binarizers} == {(0.25, 4.0)}
    assert gates and all(g.squeeze.out_features == max(1, g.in_channels // 2) for g in gates)


@pytest.mark.parametrize(("options", "message"), [
    ({"binarizer_options": {"tmin": 1}},
     "model.binarizer_options.tmin is not an option of binarizer 'ede'; allowed: t_min, t_max"),
    ({"scaling_options": {"reduction": 2}},
     "model.scaling_options.reduction is not an option of scaling 'none'; allowed: none"),
    ({"binarizer_options": 3}, "model.binarizer_options=3 must be a mapping"),
])
def test_an_option_a_part_does_not_take_is_one_line(options, message):
    with pytest.raises(InvalidArgument, match=re.escape(message)):
        create({"family": "ftbnn_resnet", "kwargs": {"binarizer": "ede", "in_channels": 1,
                                                     "num_classes": 10, "image_size": 8,
                                                     **options}})
