"""Every registry takes a name once (issue 34): a plug-in registering a taken name is refused in
one line naming the registry, the name and how to replace it; ``replace=True`` replaces it;
the same definition imported again (a reloaded plug-in) is not a second claim."""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

import pytest
import timm
from torch import Tensor

from ftbnn_exp import plugins
from ftbnn_exp.data import ClassificationDataModule
from ftbnn_exp.data import registry as data_registry
from ftbnn_exp.errors import InvalidArgument, UserError
from ftbnn_exp.models import register_family, registry
from ftbnn_exp.nn import PARTS, BinaryActivation, part, register_part, register_placement, sign_ste
from ftbnn_exp.nn import parts as parts_module
from ftbnn_exp.nn import placement as placement_module
from ftbnn_exp.nn.binarizers import RSign

PLUGINS = Path(__file__).parent / "plugins"


@pytest.fixture
def registries(monkeypatch):
    """Every registry a test writes to, restored afterwards."""
    monkeypatch.setattr(parts_module, "PARTS", {k: dict(v) for k, v in PARTS.items()})
    monkeypatch.setattr(parts_module, "_BY_CLASS", dict(parts_module._BY_CLASS))
    monkeypatch.setattr(placement_module, "PLACEMENTS", dict(placement_module.PLACEMENTS))
    monkeypatch.setattr(registry, "FAMILIES", dict(registry.FAMILIES))
    monkeypatch.setattr(data_registry, "DATA_CLASSES", dict(data_registry.DATA_CLASSES))


class MySign(BinaryActivation):
    """A plug-in's binarizer that wants the name ``rsign``."""

    def binarize(self, x: Tensor) -> Tensor:
        return sign_ste(x - 0.5, self.bound)


def test_a_taken_part_name_is_refused_in_one_line_and_replace_replaces_it(registries):
    with pytest.raises(InvalidArgument) as refused:
        register_part("binarizer", "rsign")(MySign)
    assert str(refused.value) == (
        f"binarizer part registry: 'rsign' is already registered by "
        f"ftbnn_exp.nn.binarizers.RSign; {MySign.__module__}.MySign may replace it with "
        f"register_part(..., replace=True), or take another name")
    assert part("binarizer", "rsign").cls is RSign  # nothing changed
    register_part("binarizer", "rsign", replace=True)(MySign)
    assert part("binarizer", "rsign").cls is MySign


def test_one_class_is_one_part(registries):
    with pytest.raises(InvalidArgument, match=r"^binarizer part registry: .*RSign is already "
                                              r"the binarizer part 'rsign'; a class is one part"):
        register_part("binarizer", "rsign_again")(RSign)


def test_a_plugin_taking_a_name_is_one_line_naming_the_module(registries, tmp_path,
                                                               monkeypatch):
    (tmp_path / "ftbnn_taker.py").write_text(
        "from ftbnn_exp.nn import BinaryActivation, register_part\n"
        "@register_part('binarizer', 'rsign')\n"
        "class Mine(BinaryActivation):\n"
        "    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "ftbnn_taker", raising=False)
    with pytest.raises(UserError) as refused:
        plugins.load(["ftbnn_taker"], option="plugins")
    assert str(refused.value) == (
        "plugins: module 'ftbnn_taker': binarizer part registry: 'rsign' is already "
        "registered by ftbnn_exp.nn.binarizers.RSign; ftbnn_taker.Mine may replace it with "
        "register_part(..., replace=True), or take another name")
    monkeypatch.delitem(sys.modules, "ftbnn_taker", raising=False)


def test_a_taken_placement_name_is_refused_and_replace_replaces_it(registries):
    def stage_end(position) -> bool:
        return True

    with pytest.raises(InvalidArgument, match=r"^placement registry: 'stage_end' is already "
                                              r"registered by ftbnn_exp.nn.placement.stage_end; "
                                              r".*register_placement\(\.\.\., replace=True\)"):
        register_placement("stage_end")(stage_end)
    register_placement("stage_end", replace=True)(stage_end)
    assert placement_module.placement("stage_end") is stage_end


def test_a_taken_family_or_timm_name_is_refused(registries):
    def builder(num_classes: int = 10) -> None:
        return None

    with pytest.raises(InvalidArgument, match=r"^model family registry: 'ftbnn_resnet' is "
                                              r"already registered by "
                                              r"ftbnn_exp.models.ftbnn.ftbnn_resnet; "):
        register_family("ftbnn_resnet")(builder)
    assert timm.is_model("resnet18")  # timm's own: a family must not overwrite it silently
    with pytest.raises(InvalidArgument, match=r"^timm model registry: 'resnet18' is already "
                                              r"registered by timm.models.resnet.resnet18; "):
        register_family("resnet18")(builder)
    register_family("test_registries_family")(builder)

    def other(num_classes: int = 10) -> None:
        return None

    with pytest.raises(InvalidArgument, match="'test_registries_family' is already registered"):
        register_family("test_registries_family")(other)
    register_family("test_registries_family", replace=True)(other)
    assert registry.family("test_registries_family").builder is other


def _data_class(module: str, **keywords: bool) -> type:
    return types.new_class("Shared", (ClassificationDataModule,), keywords,
                           lambda namespace: namespace.update(__module__=module))


def test_a_taken_data_class_path_is_refused_and_replace_replaces_it(registries):
    first = _data_class("myexp.a")
    assert data_registry.DATA_CLASSES["myexp.Shared"] is first
    with pytest.raises(InvalidArgument, match=r"^data class registry: 'myexp.Shared' is already "
                                              r"registered by myexp.a.Shared; myexp.b.Shared may "
                                              r"replace it with class Shared\(<its base>, "
                                              r"replace=True\)"):
        _data_class("myexp.b")
    second = _data_class("myexp.b", replace=True)
    assert data_registry.DATA_CLASSES["myexp.Shared"] is second


def test_a_plugin_imported_again_is_not_a_second_claim(registries, monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGINS))
    monkeypatch.delitem(sys.modules, "ftbnn_plugin_demo", raising=False)
    plugins.load(["ftbnn_plugin_demo"])
    first = part("binarizer", "shifted_sign").cls
    demo = importlib.reload(sys.modules["ftbnn_plugin_demo"])  # a test reloading it
    assert part("binarizer", "shifted_sign").cls is demo.ShiftedSign is not first
    assert placement_module.placement("first_of_stage") is demo.first_of_stage
    assert registry.family("ftbnn_narrow").builder is demo.ftbnn_narrow
    monkeypatch.delitem(sys.modules, "ftbnn_plugin_demo", raising=False)
