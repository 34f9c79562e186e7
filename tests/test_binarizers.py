"""Other methods' binarizers (ApproxSign, RSign, EDE) and RPReLU: each gradient against its
closed form written out here, the learned shifts' gradients derived by hand, the multi-step
switch, the lean path, the registry and an exact deployment."""

from __future__ import annotations

import copy
import math

import lightning as L
import pytest
import torch
from torch import Tensor, nn

from ftbnn_exp.deploy import fast
from ftbnn_exp.deploy.layers import to_inference
from ftbnn_exp.errors import InvalidArgument
from ftbnn_exp.models import create
from ftbnn_exp.models.ftbnn import BasicBlock
from ftbnn_exp.nn import (
    EDE,
    ApproxSign,
    BinaryActivation,
    FPReLU,
    RPReLU,
    RSign,
    fused_form,
    part,
    set_binarization,
)
from ftbnn_exp.nn.lean import lean_applies
from ftbnn_exp.training.progress import TrainingProgress, progress_at

# The boundaries -1, 0 and 1 themselves are included exactly.
POINTS = torch.tensor([-2.0, -1.5, -1.0, -0.75, -0.5, -0.25, -2.0 ** -10, 0.0, 2.0 ** -10,
                       0.25, 0.5, 0.75, 1.0, 1.5, 2.0])


def approxsign_derivative(x: Tensor) -> Tensor:
    """Bi-Real Net's Eq. 5 as written: 2 + 2x on [-1, 0) (-1 belongs here: 0), 2 − 2x on
    [0, 1) (0 belongs here: 2), 0 elsewhere (1 belongs here: 0)."""
    negative = (x >= -1) & (x < 0)
    positive = (x >= 0) & (x < 1)
    return torch.where(negative, 2 + 2 * x, torch.where(positive, 2 - 2 * x, 0.0))


def input_grad(module: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    x = x.clone().requires_grad_()
    out = module(x)
    out.sum().backward()
    return out.detach(), x.grad


def test_approxsign_is_sign_forward_and_bireal_backward():
    out, grad = input_grad(ApproxSign(), POINTS)
    assert torch.equal(out, torch.sign(POINTS))  # 0 stays 0
    assert torch.equal(grad, approxsign_derivative(POINTS))
    at = {float(p): float(g) for p, g in zip(POINTS, grad, strict=True)}
    assert (at[-1.0], at[0.0], at[1.0], at[-0.5], at[0.25]) == (0.0, 2.0, 0.0, 1.0, 1.5)


@pytest.mark.parametrize(("progress", "t", "k"), [
    (0.0, 0.1, 10.0),                      # identity-like start: k·t = 1
    (0.25, 10 ** -0.5, 10 ** 0.5),
    (0.5, 1.0, 1.0),
    (1.0, 10.0, 1.0),                      # sign-like end
])
def test_ede_gradient_follows_irnet_schedule(progress, t, k):
    ede = EDE(4)
    ede.progress = progress
    out, grad = input_grad(ede, POINTS)
    assert torch.equal(out, torch.sign(POINTS))
    expected = k * t * (1 - torch.tanh(t * POINTS) ** 2)
    assert torch.allclose(grad, expected, rtol=1e-6, atol=0)


def test_ede_range_is_configurable():
    ede = EDE(t_min=1e-3, t_max=10.0)  # IR-Net's CIFAR code: t = 0.1, k = 10 half way
    ede.progress = 0.5
    _, grad = input_grad(ede, POINTS)
    assert torch.allclose(grad, 10 * 0.1 * (1 - torch.tanh(0.1 * POINTS) ** 2), rtol=1e-6)


def test_rsign_threshold_gets_the_negated_approxsign_gradient():
    rsign = RSign(2)
    with torch.no_grad():
        rsign.threshold.copy_(torch.tensor([0.25, -0.5]).view(1, 2, 1, 1))
    x = torch.tensor([[[[0.25, 0.75, -1.0]], [[0.0, -0.5, -1.25]]]], requires_grad=True)
    weights = torch.tensor([[[[1.0, -1.0, 2.0]], [[3.0, 1.0, -2.0]]]])
    out = rsign(x)
    (out * weights).sum().backward()
    # u = x − α: [0, 0.5, -1.25] and [0.5, 0, -0.75]; ApproxSign'(u): [2, 1, 0] and [1, 2, 0.5]
    assert torch.equal(out, torch.tensor([[[[0.0, 1.0, -1.0]], [[1.0, 0.0, -1.0]]]]))
    assert torch.equal(x.grad, torch.tensor([[[[2.0, -1.0, 0.0]], [[3.0, 2.0, -1.0]]]]))
    assert torch.equal(rsign.threshold.grad.flatten(), torch.tensor([-1.0, -4.0]))


def test_rprelu_shifts_and_slope_get_hand_derived_gradients():
    rprelu = RPReLU(2)
    assert torch.equal(rprelu.beta, torch.full((2,), 0.25))  # nn.PReLU's init
    assert not rprelu.gamma.any() and not rprelu.zeta.any()
    with torch.no_grad():
        rprelu.gamma.copy_(torch.tensor([0.5, -1.0]).view(1, 2, 1, 1))
        rprelu.beta.copy_(torch.tensor([0.25, 0.5]))
        rprelu.zeta.copy_(torch.tensor([1.0, -2.0]).view(1, 2, 1, 1))
    x = torch.tensor([[[[1.5, 0.5, -0.5]], [[0.0, -1.0, -3.0]]]], requires_grad=True)
    weights = torch.tensor([[[[1.0, 2.0, 3.0]], [[1.0, 1.0, 2.0]]]])
    out = rprelu(x)
    (out * weights).sum().backward()
    # u = x − γ: [1, 0, -1] and [1, 0, -2]; u ≤ 0 takes the slope β (Eq. 3), then + ζ
    assert torch.equal(out, torch.tensor([[[[2.0, 1.0, 0.75]], [[-1.0, -2.0, -3.0]]]]))
    # ∂/∂x = w·(1 if u > 0 else β); ∂/∂γ = −Σ ∂/∂x; ∂/∂β = Σ w·u·[u ≤ 0]; ∂/∂ζ = Σ w
    assert torch.equal(x.grad, torch.tensor([[[[1.0, 0.5, 0.75]], [[1.0, 0.5, 1.0]]]]))
    assert torch.equal(rprelu.gamma.grad.flatten(), torch.tensor([-2.25, -2.5]))
    assert torch.equal(rprelu.beta.grad, torch.tensor([-3.0, -4.0]))
    assert torch.equal(rprelu.zeta.grad.flatten(), torch.tensor([6.0, 4.0]))


QUANTIZERS = [ApproxSign, RSign, EDE]


@pytest.mark.parametrize("quantizer", QUANTIZERS)
def test_tanh_mode_is_real_valued_like_every_binarizer(quantizer, generator):
    block = BasicBlock(4, 4, 1, nn.Identity(), input_quantizer=quantizer)
    set_binarization(block, "tanh", "real")  # multi-step stage 0
    x = torch.randn(2, 4, 3, 3, generator=generator)
    assert block.binarize.mode == "tanh"
    assert torch.equal(block.binarize(x), torch.tanh(x))


def _trained_step(block: nn.Module, x: Tensor) -> dict[str, Tensor]:
    optimizer = torch.optim.SGD(block.parameters(), lr=0.1)
    out = block(x)
    (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    grads = {f"grad {name}": p.grad.clone() for name, p in block.named_parameters()}
    optimizer.step()
    return {"out": out.detach(), **grads, **block.state_dict()}


@pytest.mark.parametrize("quantizer", QUANTIZERS)
def test_the_lean_path_is_not_taken_and_a_block_trains_alike(quantizer, generator):
    torch.manual_seed(0)
    lean = BasicBlock(8, 8, 1, RPReLU(8), input_quantizer=quantizer)
    with torch.no_grad():
        for p in (*lean.binarize.parameters(), *lean.nonlinear.parameters()):
            p.uniform_(-0.3, 0.3)
    plain = copy.deepcopy(lean)
    plain.conv.lean_backward = False
    x = torch.randn(4, 8, 6, 6, generator=generator)
    assert lean.conv.lean_backward
    assert not lean_applies(lean.binarize, lean.conv, lean.bn, x)
    result, expected = _trained_step(lean, x), _trained_step(plain, x)
    assert result.keys() == expected.keys()
    for name, value in result.items():
        assert torch.equal(value, expected[name]), name
    learned = [n for n in result if n.startswith("grad ") and ("binarize" in n or "nonlinear" in n)]
    assert all(result[n].abs().sum() > 0 for n in learned)
    assert len(learned) == (4 if quantizer is RSign else 3)


def test_registered_traits():
    for name in ("approxsign", "rsign", "ede"):
        entry = part("binarizer", name)
        assert entry.table1 == ("GA",) and not entry.lean_exact, name
        assert entry.progress == (name == "ede"), name
    assert fused_form(ApproxSign(), "a").threshold is None
    assert fused_form(EDE(), "e").threshold is None
    rsign = RSign(3)
    with torch.no_grad():
        rsign.threshold.copy_(torch.tensor([0.5, -1.0, 2.0]).view(1, 3, 1, 1))
    assert torch.equal(fused_form(rsign, "r").threshold, torch.tensor([0.5, -1.0, 2.0]))
    with pytest.raises(InvalidArgument, match=r"^the fused runner has no form for Tanh at "
                                              r"x\.nonlinear \(not a registered part\)$"):
        fused_form(nn.Tanh(), "x.nonlinear")
    assert part("nonlinear", "rprelu").cells(RPReLU(2)) == ("β 0.25 [0.25 0.25]",
                                                           "1, γ 0.00 ζ 0.00")
    with pytest.raises(ValueError, match="channels=0"):
        RSign()


def _resnet(binarizer: str, nonlinear: str | None = None) -> nn.Module:
    kwargs = {"depth": 18, "in_channels": 1, "num_classes": 10, "image_size": 8,
              "binarizer": binarizer}
    if nonlinear:
        kwargs["schedule"] = {"placed": nonlinear, "elsewhere": nonlinear}
    return create({"family": "ftbnn_resnet", "kwargs": kwargs})


def test_the_registry_builds_resnets_with_them(generator):
    model = _resnet("rsign", "rprelu")
    blocks = [block for stage in model.stages for block in stage]
    assert all(type(b.binarize) is RSign and type(b.nonlinear) is RPReLU for b in blocks)
    assert blocks[4].binarize.threshold.shape == (1, 64, 1, 1)  # its input's channels
    assert blocks[4].nonlinear.beta.shape == (128,)
    assert type(_resnet("rsign").stages[0][0].nonlinear) is FPReLU  # the default schedule
    assert model(torch.randn(2, 1, 8, 8, generator=generator)).shape == (2, 10)


def _randomized(model: nn.Module) -> nn.Module:
    """Trained-looking BN statistics, thresholds, shifts and slopes."""
    torch.manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
            elif isinstance(m, RSign | RPReLU | FPReLU):
                for p in m.parameters():
                    p.uniform_(-0.4, 0.6)
    return model.eval()


@pytest.mark.skipif(fast.kernels() is None, reason="no C++ toolchain here")
@pytest.mark.parametrize(("binarizer", "nonlinear", "how"), [
    ("rsign", "rprelu", "C++ binary convs (fell back from ftbnn_resnet's fused runner: the "
                        "fused runner packs sign(x) only; RSign at stages.0.0.binarize "
                        "binarizes at a learned threshold)"),
    ("approxsign", "rprelu", "fused blocks (ftbnn_resnet's runner)"),  # shift, slopes, shift
    ("approxsign", "hardtanh", "fused blocks (ftbnn_resnet's runner)"),  # a clamp
    ("approxsign", None, "fused blocks (ftbnn_resnet's runner)"),
    ("ede", None, "fused blocks (ftbnn_resnet's runner)"),
])
def test_the_export_runs_exactly_fused_or_refused_in_one_line(binarizer, nonlinear, how,
                                                               generator):
    inference = to_inference(_randomized(_resnet(binarizer, nonlinear)))
    runner, name = fast.fastest(inference, "ftbnn_resnet")
    assert name == how
    x = torch.randn(3, 1, 8, 8, generator=generator)
    with torch.no_grad():
        assert torch.equal(runner(x), inference(x))


def test_progress_is_the_fraction_of_training_done():
    assert progress_at(1, 2, 4, 2) == 0.75
    assert progress_at(1, 2, 4, 2, per_batch=False) == 0.5
    assert progress_at(1, 2, math.inf, 2) == 0.5  # an epoch of unknown length


class _Recorder(L.LightningModule):
    """A linear model behind EDE that records the progress each training step sees."""

    def __init__(self) -> None:
        super().__init__()
        self.binarize, self.plain = EDE(), BinaryActivation()
        self.fc = nn.Linear(3, 1)
        self.seen: list[float] = []

    def training_step(self, batch: list[Tensor], batch_idx: int) -> Tensor:
        self.seen.append(self.binarize.progress)
        return self.fc(self.binarize(batch[0])).square().mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _trainer(tmp_path, max_epochs: int) -> L.Trainer:
    return L.Trainer(max_epochs=max_epochs, callbacks=[TrainingProgress()], accelerator="cpu",
                     logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, default_root_dir=tmp_path)


def test_the_callback_sets_progress_before_every_batch(tmp_path):
    data = torch.utils.data.TensorDataset(torch.randn(8, 3))
    loader = torch.utils.data.DataLoader(data, batch_size=2)
    module = _Recorder()
    _trainer(tmp_path, 2).fit(module, loader)
    assert module.seen == [0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875]
    assert not hasattr(module.plain, "progress")  # only parts with the trait
    with pytest.raises(InvalidArgument, match=r"needs trainer\.max_epochs ≥ 1"):
        _trainer(tmp_path, -1).fit(_Recorder(), loader)
