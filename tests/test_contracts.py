"""Contracts that a plug-in cannot forget (issue 34): the binarizer base class owns multi-step
stage 0's tanh, a data module is given its seed and its spec at construction, a part declares
its weight decay, and the parts a family takes are declared once, for the config check and
Table 1's marks alike."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from ftbnn_exp.app.config import compose_config, specs
from ftbnn_exp.artifacts import data_module
from ftbnn_exp.data import ClassificationDataModule, DataSpec, SyntheticDataModule
from ftbnn_exp.data import registry as data_registry
from ftbnn_exp.errors import InvalidArgument, UserError
from ftbnn_exp.models import ModelSpec, create, register_family, registry
from ftbnn_exp.nn import (
    PARTS,
    BinaryActivation,
    register_part,
    set_binarization,
    sign_ste,
)
from ftbnn_exp.nn import parts as parts_module
from ftbnn_exp.report.tables import strategies
from ftbnn_exp.training.optim import OptimizerSpec, parameter_groups


@pytest.fixture
def registries(monkeypatch):
    """The registries a test writes to, restored afterwards."""
    monkeypatch.setattr(parts_module, "PARTS", {k: dict(v) for k, v in PARTS.items()})
    monkeypatch.setattr(parts_module, "_BY_CLASS", dict(parts_module._BY_CLASS))
    monkeypatch.setattr(registry, "FAMILIES", dict(registry.FAMILIES))
    monkeypatch.setattr(data_registry, "DATA_CLASSES", dict(data_registry.DATA_CLASSES))


class LarqStyle(BinaryActivation):
    """A plug-in binarizer written as any module: its forward is just its binarizing function
    (sign at a fixed threshold), no mode switch."""

    def forward(self, x: Tensor) -> Tensor:
        return sign_ste(x - 0.25, self.bound)


class OwnFunction(BinaryActivation):
    """The documented way: only ``binarize``."""

    def binarize(self, x: Tensor) -> Tensor:
        return sign_ste(x + 0.25, self.bound)


@pytest.mark.parametrize(("quantizer", "shift"), [(LarqStyle, -0.25), (OwnFunction, 0.25)])
def test_a_plugin_binarizer_gets_tanh_in_stage_0_from_the_base_class(quantizer, shift,
                                                                     generator):
    model = nn.Sequential(quantizer(4))
    x = torch.randn(2, 4, 3, 3, generator=generator)
    assert torch.equal(model(x), torch.sign(x + shift))  # its own function
    set_binarization(model, "tanh", "real")  # multi-step stage 0
    assert torch.equal(model(x), torch.tanh(x))
    set_binarization(model, "sign", "real")  # stage 1
    assert torch.equal(model(x), torch.sign(x + shift))


def test_a_binarizer_defining_forward_and_binarize_is_refused_at_its_definition():
    with pytest.raises(TypeError, match=r"^Both defines both forward and binarize; a binarizer "
                                        r"defines binarize\(x\) only"):
        type("Both", (BinaryActivation,), {"forward": lambda self, x: x,
                                           "binarize": lambda self, x: x})


class SeedlessData(ClassificationDataModule):
    """A plug-in data module whose constructor does not pass the run's seed on."""

    def __init__(self, batch_size: int = 8, seed: int = 0) -> None:
        super().__init__(batch_size=batch_size, spec=DataSpec(8, 1, 2))


class LateSpec(ClassificationDataModule):
    """A plug-in data module that sets its spec in setup(), as the README once said."""

    def setup(self, stage: str | None = None) -> None:
        self.spec = DataSpec(8, 1, 2)


def test_a_data_module_without_a_seed_is_refused_in_one_line():
    with pytest.raises(UserError) as refused:
        SeedlessData(seed=3)
    assert str(refused.value) == (
        "data module SeedlessData was given no seed; a data module takes the run's seed "
        "(`seed: ${seed}` in its data yaml, passed on to ClassificationDataModule.__init__), "
        "else every seed would draw the same order and split")
    with pytest.raises(UserError, match=r"^data module SyntheticDataModule was given no seed"):
        SyntheticDataModule(image_size=8)
    assert SyntheticDataModule(image_size=8, seed=5).seed == 5


def test_a_data_module_with_its_spec_set_in_setup_is_one_line_for_tools(registries):
    metadata = {"config": {"data": {"_target_": f"{LateSpec.__module__}.LateSpec", "seed": 1}},
                "source": "checkpoint 'x.ckpt'"}
    module = data_module(metadata)  # what deploy, report and artifacts read a run's data by
    with pytest.raises(UserError) as refused:
        _ = module.spec
    assert str(refused.value) == (
        "data module LateSpec has no spec before setup(); pass spec=DataSpec(image_size, "
        "in_channels, num_classes) to ClassificationDataModule.__init__ (tools size a model "
        "from it without loading data)")
    module.setup()
    assert module.spec == DataSpec(8, 1, 2)


class Beta(nn.Module):
    """A plug-in non-linear module with a learnable slope β (as RPReLU's)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.beta = nn.Parameter(torch.full((channels,), 0.25))

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.prelu(x, self.beta)


class DecayedBeta(Beta):
    pass


@pytest.mark.parametrize(("cls", "decay"), [(Beta, False), (DecayedBeta, True)])
def test_a_plugin_parts_parameters_get_decay_only_where_declared(cls, decay, registries):
    name = f"test_{cls.__name__.lower()}"
    register_part("nonlinear", name, make=cls, **({"decay": True} if decay else {}))(cls)
    model = create({"family": "ftbnn_resnet", "kwargs": {
        "in_channels": 1, "num_classes": 10, "image_size": 8, "width": 8,
        "schedule": {"placed": name, "elsewhere": name}}})
    groups = {g["name"]: {id(p) for p in g["params"]}
              for g in parameter_groups(model, OptimizerSpec(weight_decay=1e-4))}
    betas = {id(m.beta) for m in model.modules() if isinstance(m, cls)}
    assert len(betas) == 16  # after each block
    assert betas <= groups["real" if decay else "part"]
    assert not betas & groups.get("part" if decay else "real", set())


def _act_family(act_binarizer: str = "sign", in_channels: int = 1, num_classes: int = 10,
                image_size: int = 8) -> nn.Module:
    """A plug-in family naming its binarizer argument its own way."""
    return nn.Identity()


@pytest.mark.parametrize(("declared", "marks"), [(None, None), ({"act_binarizer": "binarizer"},
                                                               {"GA"})])
def test_table1_marks_read_the_parts_a_family_declares(declared, marks, registries):
    register_family("test_act", parts=declared)(_act_family)
    metrics = {"config": {}, "model_spec": ModelSpec("test_act", {
        "act_binarizer": "approxsign"}).to_dict()}
    assert strategies(metrics) == marks  # undeclared: unknown ("?"), never ✗


def test_the_config_check_reads_the_same_declaration(registries):
    register_family("test_act", parts={"act_binarizer": "binarizer"})(_act_family)
    cfg = compose_config(["model=fig2"])
    cfg.model = {"name": "act", "label": "act", "family": "test_act", "scheduler": "none",
                 "act_binarizer": "rsgn"}
    with pytest.raises(InvalidArgument, match=r"^model.act_binarizer='rsgn' is not a registered "
                                              r"binarizer; allowed: "):
        specs(cfg)


def test_a_family_declaring_a_part_it_does_not_take_is_refused(registries):
    with pytest.raises(InvalidArgument, match=r"^model family test_bad: parts=\{'binarizer': "
                                              r"'binarizer'\} must name an argument"):
        register_family("test_bad", parts={"binarizer": "binarizer"})(_act_family)
