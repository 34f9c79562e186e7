"""Deployment asks traits, never classes: a family declares its fused runner (a plan of units,
``deploy/runners.py``), a non-linear module its fused form from per-channel primitives
(``nn/fused.py``); both from a plug-in file outside the package, run bit-exact on every C++
path, and every way this can go wrong is refused in one line or named by ``deploy verify``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from ftbnn_exp import plugins
from ftbnn_exp.artifacts import load_checkpoint, model_from_checkpoint, model_spec
from ftbnn_exp.deploy import fast, runners
from ftbnn_exp.deploy.export import export, read_export
from ftbnn_exp.deploy.layers import to_inference
from ftbnn_exp.errors import InvalidArgument
from ftbnn_exp.models import ModelSpec, create, registry
from ftbnn_exp.nn import parts as parts_module
from ftbnn_exp.nn import register_part
from ftbnn_exp.nn.fused import FusedActivation, fused_steps

PLUGINS = Path(__file__).parent / "plugins"
needs_kernels = pytest.mark.skipif(fast.kernels() is None, reason="no C++ toolchain here")


@pytest.fixture
def plugin(monkeypatch):
    """The fused plug-in importable, and every registry it writes to restored afterwards."""
    monkeypatch.syspath_prepend(str(PLUGINS))
    monkeypatch.setattr(registry, "FAMILIES", dict(registry.FAMILIES))
    monkeypatch.setattr(runners, "RUNNERS", dict(runners.RUNNERS))
    monkeypatch.setattr(parts_module, "PARTS", {k: dict(v) for k, v in
                                                parts_module.PARTS.items()})
    monkeypatch.setattr(parts_module, "_BY_CLASS", dict(parts_module._BY_CLASS))
    monkeypatch.delitem(sys.modules, "ftbnn_plugin_fused", raising=False)


def _pooled_net(schedule: dict) -> nn.Module:
    """The plug-in family with trained-looking BN statistics and module parameters, so that
    outputs fall on both sides of every clamp and slope."""
    torch.manual_seed(3)
    model = create(ModelSpec("pooled_net", {"in_channels": 1, "num_classes": 10,
                                            "schedule": schedule}))
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.3, 2.0)
                module.weight.uniform_(0.5, 2.0)
            elif type(module).__name__ in ("ShiftedHardtanh", "FPReLU"):
                for p in module.parameters():
                    p.uniform_(-1.0, 1.5)
    return model.eval()


@needs_kernels
def test_a_plugin_family_runs_on_its_own_fused_runner_bit_exact_on_every_path(plugin):
    plugins.load(["ftbnn_plugin_fused"])
    inference = to_inference(_pooled_net({"placed": "fprelu", "elsewhere": "shifted_hardtanh"}))
    runner, how = fast.fastest(inference, "pooled_net")
    assert how == "fused blocks (pooled_net's runner)" and isinstance(runner, fast.FusedNetwork)
    # the module's shift, clamp and scale run after the kernel; FPReLU's slopes in it
    assert [[step for step, _ in k.after] for k in runner.kernels] == [
        ["shift", "clamp", "scale"], [], ["shift", "clamp", "scale"], []]
    assert [k.act for k in runner.kernels] == [0, 2, 0, 2]
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    clamped = inference.stages[0][0].nonlinear
    seen = []
    hook = clamped.register_forward_hook(lambda m, args, _: seen.append(args[0] + m.shift))
    with torch.no_grad():
        reference = inference(x)
        hook.remove()
        # values below, inside and above the clamp's range
        assert (seen[0] < -1).any() and (seen[0].abs() < 1).any() and (seen[0] > 1).any()
        for path in fast.supported_paths():
            fused = fast.fused(inference, "pooled_net", fast.PATHS.index(path))
            assert torch.equal(fused(x), reference), path
            assert torch.equal(fused(x), reference), path  # the layouts chosen at the first


def test_a_plugin_family_and_module_train_export_and_verify_fused(tmp_path, plugin):
    """From the command line: one plug-in file and two yamls train the family; `deploy verify`
    names the runner it verified and passes, bit-exact."""
    run_dir = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "ftbnn_exp", f"hydra.searchpath=[file://{PLUGINS / 'conf'}]",
         "experiment=fused_plugin", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
         "trainer.limit_val_batches=1", "trainer.limit_test_batches=1", "logger=none",
         f"hydra.run.dir={run_dir}"], cwd=PLUGINS, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["model_spec"]["family"] == "pooled_net"
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    verified = subprocess.run(
        [sys.executable, "-m", "ftbnn_exp.deploy", "--plugin", "ftbnn_plugin_fused", "verify",
         str(checkpoint), "--batches", "1"], cwd=PLUGINS, capture_output=True, text=True,
        timeout=600)
    assert verified.returncode == 0, verified.stdout + verified.stderr[-2000:]
    lines = verified.stdout.splitlines()
    assert lines[-1] == "PASS"
    if fast.kernels() is not None:
        assert "runner verified: fused blocks (pooled_net's runner)" in lines
        kernels = next(line for line in lines if line.startswith("C++ kernels vs the reference"))
        assert all(f"{path} exact" in kernels for path in fast.supported_paths()), kernels
    plugins.load(["ftbnn_plugin_fused"])
    model = model_from_checkpoint(load_checkpoint(checkpoint))
    assert [type(b.nonlinear).__name__ for stage in model.stages for b in stage] == [
        "ShiftedHardtanh", "ReLU"] * 2
    # its export, loaded back from the file, runs on the family's fused runner as verified
    export(checkpoint, tmp_path / "model.ftbnn")
    inference, metadata = read_export(tmp_path / "model.ftbnn")
    runner, how = fast.fastest(inference, model_spec(metadata).family)
    assert how == ("reference engine" if fast.kernels() is None
                   else "fused blocks (pooled_net's runner)")
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert torch.equal(runner(x), inference(x))


def test_an_unknown_fused_kind_is_refused_at_construction_in_one_line():
    with pytest.raises(InvalidArgument) as refused:
        FusedActivation("softplus")
    assert str(refused.value) == ("fused activation kind 'softplus' is not a primitive; "
                                  "allowed: none, relu, scale, shift, slopes, clamp")
    with pytest.raises(InvalidArgument, match=r"^fused activation 'clamp' takes 2 parameter\(s\) "
                                              r"\(low, high\), not 1$"):
        FusedActivation("clamp", 1.0)
    with pytest.raises(InvalidArgument, match=r"^fused activation 'shift': values is a str; "):
        FusedActivation("shift", "0.5")
    with pytest.raises(InvalidArgument, match=r"^the fused form at a\.nonlinear is a str; "):
        fused_steps(("relu",), "a.nonlinear")
    assert [s.kind for s in fused_steps((FusedActivation("none"), FusedActivation("relu")),
                                        "a")] == ["relu"]


class _Softplus(nn.Softplus):
    """A module whose declared form names a kind that does not exist."""


@needs_kernels
@pytest.mark.parametrize(("form", "reason"), [
    (lambda m: FusedActivation("softplus"),
     "fused activation kind 'softplus' is not a primitive; allowed: none, relu, scale, shift, "
     "slopes, clamp"),
    (lambda m: FusedActivation("shift", torch.zeros(3)),
     "the fused form at stages.0.0.nonlinear has 3 values for 64 channels; allowed: 1 or 64"),
])
def test_a_form_the_runner_cannot_take_falls_back_exactly_saying_why(plugin, form, reason):
    """Past `fastest`'s refusal no KeyError escapes: the per-conv path runs the module itself,
    exactly, and the runner's name says why it fell back."""
    register_part("nonlinear", "test_softplus", make=lambda channels: _Softplus(),
                  fused=form)(_Softplus)
    model = create(ModelSpec("ftbnn_resnet", {
        "depth": 18, "in_channels": 1, "num_classes": 10, "image_size": 8,
        "schedule": {"placed": "relu", "elsewhere": "test_softplus"}})).eval()
    inference = to_inference(model)
    runner, how = fast.fastest(inference, "ftbnn_resnet")
    assert how == f"C++ binary convs (fell back from ftbnn_resnet's fused runner: {reason})"
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(runner(x), inference(x))


@needs_kernels
def test_a_family_without_a_fused_runner_runs_per_conv_and_says_so():
    inference = to_inference(create(ModelSpec("bireal_resnet", {
        "depth": 18, "in_channels": 1, "num_classes": 10, "image_size": 8})).eval())
    runner, how = fast.fastest(inference, "bireal_resnet")
    assert how == "C++ binary convs (bireal_resnet has no fused runner)"
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(runner(x), inference(x))
    with pytest.raises(InvalidArgument, match=r"^bireal_resnet has no fused runner$"):
        fast.fused(inference, "bireal_resnet")


def test_a_family_refuses_a_second_fused_runner_unless_it_replaces_it(plugin):
    def other(model: nn.Module) -> runners.FusedPlan:
        raise AssertionError("never planned")

    with pytest.raises(ValueError) as refused:
        runners.register_runner("ftbnn_resnet")(other)
    assert str(refused.value) == (
        "family 'ftbnn_resnet' already has a fused runner (ftbnn_exp.models.ftbnn."
        "fused_baseline); register_runner('ftbnn_resnet', replace=True) replaces it")
    runners.register_runner("ftbnn_resnet", replace=True)(other)
    assert runners.runner_of("ftbnn_resnet") is other


def test_another_block_of_the_baseline_family_is_refused_by_its_plan():
    model = create(ModelSpec("ftbnn_resnet", {"depth": 18, "in_channels": 1, "num_classes": 10,
                                              "image_size": 8, "block": "resnet"})).eval()
    with pytest.raises(InvalidArgument, match=r"^the fused runner runs FTBNN blocks "
                                              r"\(block=ftbnn\), not ResidualPairBlock$"):
        fast.fused(to_inference(model), "ftbnn_resnet")
