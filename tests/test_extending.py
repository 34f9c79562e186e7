"""The research paths: plug-ins from outside the package (a placement, a model variant, parts, a
family with its own fused runner, a module whose fused form shifts or clamps) and every
``model=`` option through timm. The layers of the house: ``tests/test_layering.py``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from torch import nn

from ftbnn_exp import plugins
from ftbnn_exp.app import build
from ftbnn_exp.app.config import CONF_DIR, compose_config, validate
from ftbnn_exp.artifacts import load_checkpoint, model_from_checkpoint
from ftbnn_exp.complexity import count_complexity
from ftbnn_exp.data import DataSpec
from ftbnn_exp.deploy import fast
from ftbnn_exp.deploy.fast import fused
from ftbnn_exp.deploy.layers import to_inference
from ftbnn_exp.errors import InvalidArgument, UserError
from ftbnn_exp.models import FAMILIES, ModelSpec, create, registry
from ftbnn_exp.nn import parts as parts_module
from ftbnn_exp.nn import placement as placement_module

PLUGINS = Path(__file__).parent / "plugins"
MODEL_OPTIONS = sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml"))


@pytest.fixture
def plugin_path(monkeypatch):
    """The plug-in importable, and every registry it writes to restored afterwards (so the
    parts it adds do not appear in later tests' lists of allowed names)."""
    monkeypatch.syspath_prepend(str(PLUGINS))
    monkeypatch.setattr(placement_module, "PLACEMENTS", dict(placement_module.PLACEMENTS))
    monkeypatch.setattr(registry, "FAMILIES", dict(registry.FAMILIES))
    monkeypatch.setattr(parts_module, "PARTS", {k: dict(v) for k, v in
                                                parts_module.PARTS.items()})
    monkeypatch.setattr(parts_module, "_BY_CLASS", dict(parts_module._BY_CLASS))
    monkeypatch.delitem(sys.modules, "ftbnn_plugin_demo", raising=False)


@pytest.mark.slow
def test_a_plugin_placement_and_model_variant_train_and_are_counted(tmp_path, plugin_path):
    run_dir = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "ftbnn_exp", f"hydra.searchpath=[file://{PLUGINS / 'conf'}]",
         "plugins=[ftbnn_plugin_demo]", "model=narrow", "placement=first_of_stage",
         "trainer.max_epochs=1", "trainer.limit_train_batches=1", "trainer.limit_val_batches=1",
         "trainer.limit_test_batches=1", "logger=none", f"hydra.run.dir={run_dir}"],
        cwd=PLUGINS, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["epochs_run"] == 1
    spec = ModelSpec.from_dict(metrics["model_spec"])
    assert spec.family == "ftbnn_narrow" and spec.imports == ("ftbnn_plugin_demo",)
    assert spec.kwargs["schedule"]["placement"] == "first_of_stage"
    # Rebuilt from the checkpoint once the user names the plug-in (a file never imports it):
    # ReLU after the first block of each of the 4 stages of 2 blocks, FPReLU after the second.
    checkpoint = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    with pytest.raises(UserError, match="asks for plug-in module 'ftbnn_plugin_demo'"):
        model_from_checkpoint(checkpoint)
    assert "ftbnn_plugin_demo" not in sys.modules
    plugins.load(["ftbnn_plugin_demo"])
    model = model_from_checkpoint(checkpoint)
    kinds = [type(block.nonlinear).__name__ for stage in model.stages for block in stage]
    assert kinds == ["ReLU", "FPReLU"] * 4
    assert [stage[0].conv.out_channels for stage in model.stages] == [16, 32, 64, 128]
    # Counted by our counter, on the run's own data size and on ImageNet's.
    counted = count_complexity(model, (1, 8, 8), "macs")
    assert metrics["complexity"]["bops"] == counted.bops > 0
    assert metrics["complexity"]["params_binary"] == sum(
        block.conv.weight.numel() for stage in model.stages for block in stage)
    assert f"BOPs {counted.bops / 1e6:.2f}M" in done.stdout
    table2 = subprocess.run([sys.executable, "-m", "ftbnn_exp.report", "--plugin",
                             "ftbnn_plugin_demo", "fprelu",
                             str(run_dir / "checkpoints" / "last.ckpt")], cwd=PLUGINS,
                            capture_output=True, text=True, timeout=300)
    assert table2.returncode == 0, table2.stderr
    rows = table2.stdout.strip().splitlines()[1:]
    assert [r.split()[0] for r in rows if "ReLU" in r] == [
        "BConv1-1", "BConv2-1", "BConv3-1", "BConv4-1"]


def test_a_plugin_binarizer_and_module_train_count_and_deploy(tmp_path, plugin_path):
    """One file (the plug-in) and one yaml (``experiment=shifted_sign``) put a new binarizer
    and a new non-linear module into the baseline from the command line."""
    run_dir = tmp_path / "run"
    search = f"hydra.searchpath=[file://{PLUGINS / 'conf'}]"
    done = subprocess.run(
        [sys.executable, "-m", "ftbnn_exp", search, "experiment=shifted_sign",
         "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
         "trainer.limit_test_batches=1", "logger=none", f"hydra.run.dir={run_dir}"],
        cwd=PLUGINS, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["model_spec"]["imports"] == ["ftbnn_plugin_demo"]
    plugins.load(["ftbnn_plugin_demo"])
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    model = model_from_checkpoint(load_checkpoint(checkpoint))
    blocks = [block for stage in model.stages for block in stage]
    assert {type(b.binarize).__name__ for b in blocks} == {"ShiftedSign"}
    assert [type(b.nonlinear).__name__ for b in blocks] == (["HalfLeaky"] * 3 + ["ReLU"]) * 4
    # the threshold starts at binarizer_options' 0.1 and learned (it gets a gradient)
    thresholds = torch.cat([b.binarize.threshold.flatten() for b in blocks])
    assert not torch.all(thresholds == 0.1)
    counted = count_complexity(model, (1, 8, 8), "macs")
    assert metrics["complexity"]["bops"] == counted.bops > 0
    verified = subprocess.run(
        [sys.executable, "-m", "ftbnn_exp.deploy", "verify", str(checkpoint), "--plugin",
         "ftbnn_plugin_demo", "--batches", "1"], cwd=PLUGINS, capture_output=True, text=True,
        timeout=600)
    assert verified.returncode == 0, verified.stderr[-2000:]
    assert verified.stdout.strip().endswith("PASS")
    if fast.kernels() is not None:  # it names the fall-back it verified, and why
        assert ("runner verified: C++ binary convs (fell back from ftbnn_resnet's fused runner: "
                "the fused runner packs sign(x) only; ShiftedSign at stages.0.0.binarize "
                "binarizes at a learned threshold)") in verified.stdout.splitlines()
    # without the plug-in named, the checkpoint is refused in one line
    refused = subprocess.run([sys.executable, "-m", "ftbnn_exp.deploy", "verify",
                              str(checkpoint)], cwd=PLUGINS, capture_output=True, text=True,
                             timeout=300)
    assert refused.returncode != 0
    assert len(refused.stderr.strip().splitlines()) == 1
    assert "ftbnn_plugin_demo" in refused.stderr


def test_a_part_without_a_fused_form_is_refused_in_one_line_by_the_fused_runner(plugin_path):
    plugins.load(["ftbnn_plugin_demo"])
    spec = ModelSpec("ftbnn_resnet", {"depth": 18, "in_channels": 1, "num_classes": 10,
                                      "image_size": 8,
                                      "schedule": {"placed": "relu", "elsewhere": "half_leaky"}})
    model = create(spec).eval()
    with pytest.raises(InvalidArgument) as refusal:
        fused(to_inference(model), "ftbnn_resnet")
    assert str(refusal.value) == ("the fused runner has no form for HalfLeaky at "
                                  "stages.0.0.nonlinear (part 'half_leaky')")


def test_an_unknown_placement_is_one_line_without_the_plugin(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "ftbnn_exp", f"hydra.searchpath=[file://{PLUGINS / 'conf'}]",
         "placement=first_of_stage", f"hydra.run.dir={tmp_path}"], cwd=tmp_path,
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip() == ("error: placement=first_of_stage is not registered; "
                                   "allowed: period, stage_end")


@pytest.mark.parametrize("option", MODEL_OPTIONS)
def test_every_model_option_is_a_timm_model(option):
    cfg = compose_config([f"model={option}", "width=32"])
    specs = validate(cfg)
    spec = build.model_spec(cfg, specs, DataSpec(32, 3, 10))
    assert cfg.model.family in FAMILIES and timm.is_model(cfg.model.family)
    kwargs = dict(spec.kwargs)
    if "schedule" in kwargs:
        kwargs["schedule"] = specs.schedule
    ours, theirs = create(spec), timm.create_model(cfg.model.family, **kwargs)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in theirs.state_dict().items()}
    assert [type(m) for m in ours.modules()] == [type(m) for m in theirs.modules()]
    x = torch.randn(2, kwargs.get("in_channels", 3), 32, 32)
    theirs.load_state_dict(ours.state_dict())
    assert torch.equal(ours.eval()(x), theirs.eval()(x))
    features = ours.forward_features(x)
    assert torch.equal(ours.forward_head(features), ours(x))


def test_the_default_model_and_a_derived_one_rebuild_from_their_spec_alone():
    cfg = compose_config(["model=derived", "groups=4", "budget=90"])
    specs = validate(cfg)
    spec = build.model_spec(cfg, specs, DataSpec(224, 3, 1000),
                            build.resolve_width(specs, cfg.budget))
    again = create(ModelSpec.from_dict(json.loads(json.dumps(spec.to_dict()))))
    convs = [m for m in again.modules() if isinstance(m, nn.Conv2d)]
    assert spec.kwargs["width"] == again.width and {c.groups for c in convs[2:]} == {4}
