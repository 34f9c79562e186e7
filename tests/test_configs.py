"""Every config in conf/ composes and validates; user mistakes become one-line errors."""

from __future__ import annotations

import pytest

from ftbnn_exp.app.config import CONF_DIR, check_overrides, compose_config, validate
from ftbnn_exp.errors import UserError
from ftbnn_exp.models import FAMILIES

# conf/paper/ holds the tables' settings, composed through every experiment overlay.
GROUPS = sorted(p.name for p in CONF_DIR.iterdir()
                if p.is_dir() and p.name not in ("hydra", "paper"))


def options(group: str) -> list[str]:
    return sorted(str(p.relative_to(CONF_DIR / group).with_suffix(""))
                  for p in (CONF_DIR / group).rglob("*.yaml"))


ALL = [(group, option) for group in GROUPS for option in options(group)]


@pytest.mark.parametrize(("group", "option"), ALL, ids=[f"{g}={o}" for g, o in ALL])
def test_every_config_composes_and_validates(group, option):
    overrides = [f"{group}={option}"]
    if option in ("imagenet", "folder"):
        overrides.append("data.root=/datasets/imagenet")
    cfg = compose_config(overrides)
    validate(cfg, on_this_machine=False)  # trainer=gpu is checked where a GPU is
    assert cfg.model.family in FAMILIES


def test_default_config_is_the_baseline_on_digits():
    cfg = compose_config([])
    assert (cfg.model.name, cfg.nonlinearity.name, cfg.data.name) == (
        "baseline", "relu_partial_fprelu", "digits")
    assert cfg.scheduler.name == "multistep" and cfg.optimizer.lr == 0.01


def test_paper_schedule_follows_the_model():
    assert compose_config(["model=derived"]).scheduler.name == "cosine"
    assert compose_config(["model=derived", "scheduler=multistep"]).scheduler.name == "multistep"


@pytest.mark.parametrize(("overrides", "message"), [
    (["nonlinearity=foo"], "nonlinearity=foo is not an option; allowed: fprelu, hardtanh, none"),
    (["model=bar"], "model=bar is not an option; allowed: baseline, bireal, derived"),
    (["trainer.max_epochs=abc"], "trainer.max_epochs='abc' must be an integer"),
    (["nonlinearity.elsewhere=tanh"], "allowed: fprelu, hardtanh, identity, prelu, relu"),
    (["foo=1"], "foo is not a config key"),
    (["data=mnist", "data.root=???"], "data.root is required"),
    (["depth=0"], "depth=0 must be positive"),
    (["nonlinearity=none,bogus"], "nonlinearity=bogus is not an option"),
    (["channels_last=maybe"], "channels_last='maybe' is not allowed; allowed: auto, true, false"),
    (["data=imagenet", "data.skip_corrupt=yes"], "data.skip_corrupt='yes' must be true or false"),
    (["optimizer.reference_batch=0"], "optimizer.reference_batch=0 must be positive"),
    (["experiment=kd_multistep", "stage=5"], "stage=5 is not allowed; allowed: null, 0, 1, 2"),
    (["experiment=kd_multistep", "init_from=/no/such.ckpt"],
     "init_from=/no/such.ckpt is not a file; give a checkpoint"),
])
def test_mistakes_are_named_in_one_line(overrides, message):
    with pytest.raises(UserError) as caught:
        check_overrides(overrides)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("row", sorted(
    p.stem for p in (CONF_DIR / "experiment" / "table3").glob("*.yaml")))
def test_the_cpu_cifar10_overlay_keeps_each_rows_modules(row):
    """paper/table3_cifar10_cpu changes data, width and budget, never a row's model,
    non-linearity or optimizer (docs/cifar10-cpu.md)."""
    plain = compose_config([f"experiment=table3/{row}"])
    cpu = compose_config([f"experiment=table3/{row}", "+paper=table3_cifar10_cpu",
                          "data.root=/data/cifar10"])
    validate(cpu, on_this_machine=False)
    for key in ("nonlinearity", "optimizer", "row"):
        assert cpu[key] == plain[key]
    assert {k: v for k, v in cpu.model.items() if k != "width"} == dict(plain.model)
    assert (cpu.model.width, cpu.data.name, cpu.augment._target_.rsplit(".", 1)[1]) == (
        16, "cifar10", "CifarCrop")
