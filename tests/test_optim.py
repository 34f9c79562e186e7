"""§3's optimizer and schedules."""

from __future__ import annotations

import itertools

import torch

from ftbnn_exp.models import ftbnn_resnet
from ftbnn_exp.nn import BinaryConv2d, NonLinearitySchedule
from ftbnn_exp.training.optim import (
    OptimizerSpec,
    SchedulerSpec,
    build_optimizer,
    build_scheduler,
    milestone_epochs,
)


def test_multistep_milestones_are_45_and_55_of_60_and_scale():
    spec = SchedulerSpec("multistep", (0.75, 55 / 60), 0.1)
    assert milestone_epochs(spec, 60) == [45, 55]
    assert milestone_epochs(spec, 12) == [9, 11]


def test_binary_weights_get_no_decay_and_the_rest_get_the_configured_one():
    model = ftbnn_resnet(NonLinearitySchedule(), image_size=8, in_channels=1, num_classes=10)
    optimizer = build_optimizer(model, OptimizerSpec(weight_decay=1e-4))
    groups = {g["name"]: g for g in optimizer.param_groups}
    binary = {id(m.weight) for m in model.modules() if isinstance(m, BinaryConv2d)}
    assert {id(p) for p in groups["binary"]["params"]} == binary
    assert groups["binary"]["weight_decay"] == 0.0 and groups["real"]["weight_decay"] == 1e-4
    assert len(binary) + len(groups["real"]["params"]) == len(list(model.parameters()))
    assert isinstance(optimizer, torch.optim.Adam) and optimizer.defaults["lr"] == 0.01


def _lrs(spec: SchedulerSpec, epochs: int) -> list[float]:
    optimizer = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=0.01)
    scheduler = build_scheduler(optimizer, spec, epochs)
    lrs = []
    for _ in range(epochs + 1):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_multistep_lr_values():
    lrs = _lrs(SchedulerSpec("multistep", (0.75, 55 / 60), 0.1), 60)
    assert lrs[44] == 0.01 and abs(lrs[45] - 1e-3) < 1e-12 and abs(lrs[55] - 1e-4) < 1e-12


def test_cosine_reaches_zero_at_the_end():
    lrs = _lrs(SchedulerSpec("cosine"), 10)
    assert lrs[0] == 0.01 and abs(lrs[5] - 0.005) < 1e-12 and lrs[10] < 1e-12
    assert all(a > b for a, b in itertools.pairwise(lrs))
