"""The traced counter against published totals and Table 4 (Appendix B, Fig. 3, Table 4)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from ftbnn_exp.complexity import count_complexity, solve_width
from ftbnn_exp.errors import InvalidArgument
from ftbnn_exp.models import (
    FTBNN,
    SolvedWidth,
    bireal_resnet,
    derived_ftbnn,
    family,
    ftbnn_resnet,
    register_family,
    registry,
    resnet_fp,
)
from ftbnn_exp.models.layout import BLOCKS_PER_STAGE
from ftbnn_exp.nn import BinaryActivation, BinaryConv2d, FPReLU, NonLinearitySchedule
from ftbnn_exp.paper import PAPER_TABLE4, paper_table4_row
from ftbnn_exp.report.complexity_table import compare_all, table4_complexity_markdown

IMAGENET = (3, 224, 224)
README = Path(__file__).resolve().parents[1] / "README.md"


def test_counts_a_hand_built_model_exactly():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=False),  # 8*8*4*27 = 6912 MACs, 108 params
        nn.BatchNorm2d(4),  # paper: 2*256 FLOPs, 8 params
        nn.ReLU(),
        BinaryActivation(),
        BinaryConv2d(4, 6, 3, stride=2, padding=1),  # 4*4*6*36 = 3456 MACs, doubled
        FPReLU(6),  # 12 params
        BinaryActivation(),
        BinaryConv2d(6, 6, 3, padding=1, groups=3),  # 4*4*6*18 = 1728, not doubled
        nn.AvgPool2d(3, stride=2, padding=1),  # paper: 9*2*2*6 = 216
        nn.Flatten(),
        nn.Linear(24, 5),  # 120 MACs, 125 params
    )
    macs = count_complexity(model, (3, 8, 8), "macs")
    paper = count_complexity(model, (3, 8, 8), "paper")
    assert macs.flops == 6912 + 120 and paper.flops == 6912 + 512 + 216 + 120
    assert macs.bops == paper.bops == 2 * 3456 + 1728
    assert [r.doubled for r in macs.layers if r.kind == "binary"] == [True, False]
    assert macs.params_binary == 4 * 6 * 9 + 6 * 2 * 9
    assert macs.params_fp == 108 + 8 + 12 + 125
    assert macs.params == 253 + macs.params_binary / 32
    assert macs.budget == macs.flops + macs.bops / 64


def test_full_precision_resnet18_flops_and_params():
    c = count_complexity(resnet_fp(), IMAGENET, "macs")
    assert c.flops == pytest.approx(1.81e9, rel=0.01) and c.bops == 0
    assert c.params == 11_689_512


def test_bireal18_budget_matches_published_value():
    c = count_complexity(bireal_resnet(), IMAGENET, "macs")
    assert c.budget == pytest.approx(1.64e8, rel=0.01)  # published 1.63e8 rounds it


def test_baseline_doubles_exactly_the_three_blocks_after_a_relu():
    c = count_complexity(ftbnn_resnet(NonLinearitySchedule("relu", "fprelu")), IMAGENET, "macs")
    assert [r.name for r in c.layers if r.doubled] == [
        "stages.1.0.conv", "stages.2.0.conv", "stages.3.0.conv"]
    plain = count_complexity(ftbnn_resnet(NonLinearitySchedule("fprelu", "fprelu")), IMAGENET)
    assert c.bops - plain.bops == sum(r.macs for r in c.layers if r.doubled)


@pytest.mark.parametrize(("depth", "budget", "width"),
                         [(18, 90, 100), (18, 135, 128), (34, 90, 68), (34, 135, 88),
                          (44, 135, 76)])
def test_group1_widths_reproduce_table4(depth, budget, width):
    paper = paper_table4_row(budget, depth, 1)
    c = count_complexity(derived_ftbnn(NonLinearitySchedule(), width, depth, 1), IMAGENET,
                         "paper")
    stage_bops = sum(r.bops for r in c.layers if r.name.startswith("stages."))
    assert stage_bops / 1e6 == pytest.approx(paper.bops_m, rel=1e-3)
    assert c.flops / 1e6 == pytest.approx(paper.flops_m, rel=0.015)
    assert c.params / 1e6 == pytest.approx(paper.params_m, rel=0.015)


# Per-row tolerances (ours vs Table 4's columns), a little above the worst row we measure
# (FLOPs +2.2 %, BOPs -2.8 %, Params +4.4 %): a model that drops a group or a shortcut moves
# FLOPs or Params of most rows far beyond them.
TABLE4_TOLERANCE = {"budget": 0.04, "flops": 0.025, "bops": 0.03, "params": 0.05}


@pytest.mark.slow
def test_all_20_rows_solve_to_a_budget_and_match_every_column(capsys):
    rows = compare_all()
    assert len(rows) == len(PAPER_TABLE4) == 20
    table = table4_complexity_markdown(rows)
    with capsys.disabled():
        print("\n" + table)
    for row in rows:
        errors = row.errors()
        assert all(abs(errors[k]) < limit for k, limit in TABLE4_TOLERANCE.items()), row
    assert table in README.read_text(), "README's Table 4 comparison is out of date"


def test_solver_answers_the_nearest_admissible_width():
    choice = solve_width(family("derived_ftbnn"), {"depth": 18, "groups": 3}, 100.0)
    assert choice.width % 3 == 0 and choice.paper_row is None
    gaps = [abs(b - choice.target) for _, b in choice.neighbours]
    assert all(abs(choice.budget - choice.target) <= gap for gap in gaps)


@pytest.mark.parametrize("depth", sorted(BLOCKS_PER_STAGE))
@pytest.mark.parametrize("groups", [1, 2, 3, 5, 8])
def test_every_derived_depth_and_group_runs_at_224_and_32(depth, groups):
    width = 4 * groups
    for size in (224, 32):
        model = derived_ftbnn(NonLinearitySchedule(), width, depth, groups, num_classes=7,
                              image_size=size).eval()
        with torch.no_grad():
            assert model(torch.randn(1, 3, size, size)).shape == (1, 7)


def test_unbuildable_width_names_widths_that_work():
    with pytest.raises(ValueError, match="width=101 is not divisible by groups=5; widths that "
                                         "work near it: 95, 100, 105, 110"):
        derived_ftbnn(NonLinearitySchedule(), 101, 34, 5)


def test_cli_json_and_error(capsys):
    from ftbnn_exp.app.complexity import main as complexity_main

    assert complexity_main(["model=derived", "depth=34", "groups=5", "budget=135",
                            "data=imagenet", "format=json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {"flops", "bops", "params", "params_fp", "params_binary", "budget", "convention",
            "layers"} <= set(result)
    assert result["budget"] == pytest.approx(131.7e6, rel=0.04)
    assert result["convention"] == "paper" and result["width"] % 5 == 0
    bad = subprocess.run([sys.executable, "-m", "ftbnn_exp.complexity", "convention=flops"],
                         capture_output=True, text=True, timeout=300)  # the real command
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "convention" in bad.stderr


def _plain(schedule: NonLinearitySchedule, width: int = 64, in_channels: int = 3,
           num_classes: int = 1000, image_size: int = 224) -> FTBNN:
    """A family of the test's own: one FTBNN block per stage, widths w to 8w."""
    return FTBNN([1, 1, 1, 1], schedule, [width * 2**i for i in range(4)], in_channels,
                 num_classes, image_size)


def test_the_solver_builds_any_family_that_says_how_with_its_own_builder(monkeypatch):
    monkeypatch.setattr(registry, "FAMILIES", dict(registry.FAMILIES))
    register_family("test_solved", takes_schedule=True, solved_width=SolvedWidth(
        problem=lambda width: None if width % 4 == 0 else "not a multiple of 4"))(_plain)
    choice = solve_width(family("test_solved"), {}, 30.0, "macs")
    assert choice.width % 4 == 0 and choice.paper_row is None
    measured = count_complexity(_plain(NonLinearitySchedule(), choice.width), IMAGENET, "macs")
    assert choice.budget == measured.budget
    assert all(abs(choice.budget - choice.target) <= abs(b - choice.target)
               for _, b in choice.neighbours)
    assert all(w % 4 == 0 for w, _ in choice.neighbours)


def test_a_solved_width_without_a_builder_is_refused_in_one_line(monkeypatch):
    monkeypatch.setattr(registry, "FAMILIES", dict(registry.FAMILIES))
    with pytest.raises(ValueError) as refused:
        register_family("test_solved", takes_schedule=True, solved_width=True)(_plain)
    assert str(refused.value) == (
        "register_family('test_solved'): solved_width=True does not say how the width solver "
        "builds the family; allowed: solved_width=SolvedWidth(arguments=..., problem=...)")
    with pytest.raises(ValueError, match=r"^register_family\('test_solved'\): solved_width "
                                         r"builds at a width with depth, which the builder "
                                         r"does not take$"):
        register_family("test_solved", takes_schedule=True,
                        solved_width=SolvedWidth(("depth",)))(_plain)
    assert "test_solved" not in registry.FAMILIES
    with pytest.raises(InvalidArgument, match=r"^model family ftbnn_resnet has no solved "
                                              r"width; give width=N$"):
        solve_width(family("ftbnn_resnet"), {}, 90.0)
