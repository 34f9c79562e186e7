"""Optimizer and learning-rate schedule of §3, as plain specs (no Hydra here)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from ftbnn_exp.errors import InvalidArgument
from ftbnn_exp.nn import binary_weight_parameters
from ftbnn_exp.nn.parts import undecayed_parameters
from ftbnn_exp.validation import FRACTION, NUMBER, check_value

OPTIMIZERS = ("adam",)
SCHEDULERS = ("multistep", "cosine", "none")


@dataclass(frozen=True)
class OptimizerSpec:
    """Adam, lr 0.01 (§3). Binary-conv latent weights get ``binary_weight_decay`` (0 in the
    paper); every other parameter gets ``weight_decay`` (unstated in the paper: our default 5e-6,
    as common for Adam-trained BNNs). Decay is Adam's L2 term, not AdamW's."""

    name: str = "adam"
    lr: float = 0.01
    weight_decay: float = 5e-6
    binary_weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)

    def __post_init__(self) -> None:
        check_value("optimizer.name", self.name, allowed=OPTIMIZERS)
        check_value("optimizer.lr", self.lr, NUMBER, positive=True)
        check_value("optimizer.weight_decay", self.weight_decay, NUMBER)
        check_value("optimizer.binary_weight_decay", self.binary_weight_decay, NUMBER)
        # Adam's running averages: a beta of 1 or more never forgets, torch refuses it late
        if len(self.betas) != 2:
            raise InvalidArgument(f"optimizer.betas={list(self.betas)} must be two numbers in "
                                  f"[0, 1), e.g. [0.9, 0.999]")
        for beta in self.betas:
            check_value("optimizer.betas", beta, FRACTION)


@dataclass(frozen=True)
class SchedulerSpec:
    """``multistep``: ×``gamma`` at the given fractions of ``max_epochs`` (45/60 and 55/60 for the
    baseline, §3). ``cosine``: cosine to 0 at the end (the derived models). Both step per epoch,
    so a shorter run keeps the shape. ``none``: constant."""

    name: str = "multistep"
    milestones: tuple[float, ...] = field(default=(0.75, 55 / 60))
    gamma: float = 0.1

    def __post_init__(self) -> None:
        check_value("scheduler.name", self.name, allowed=SCHEDULERS)
        check_value("scheduler.gamma", self.gamma, NUMBER)
        for milestone in self.milestones:
            check_value("scheduler.milestones", milestone, NUMBER, positive=True)


def parameter_groups(model: nn.Module, spec: OptimizerSpec) -> list[dict]:
    """Binary latent weights (``binary_weight_decay``), the parts' own scales and thresholds
    (no decay unless their part declares it: :func:`~ftbnn_exp.nn.parts.undecayed_parameters`)
    and every other parameter (``weight_decay``)."""
    binary = {id(p) for p in binary_weight_parameters(model)}
    parts = {id(p) for p in undecayed_parameters(model)} - binary
    groups = [
        {"params": [p for p in model.parameters() if id(p) in binary],
         "weight_decay": spec.binary_weight_decay, "name": "binary"},
        {"params": [p for p in model.parameters() if id(p) in parts],
         "weight_decay": 0.0, "name": "part"},
        {"params": [p for p in model.parameters() if id(p) not in binary | parts],
         "weight_decay": spec.weight_decay, "name": "real"},
    ]
    return [group for group in groups if group["params"]]


def build_optimizer(model: nn.Module, spec: OptimizerSpec) -> torch.optim.Optimizer:
    return torch.optim.Adam(parameter_groups(model, spec), lr=spec.lr, betas=spec.betas)


def milestone_epochs(spec: SchedulerSpec, max_epochs: int) -> list[int]:
    """Fractions of ``max_epochs`` → epochs: 0.75 and 55/60 of 60 give 45 and 55."""
    return sorted({max(1, round(fraction * max_epochs)) for fraction in spec.milestones})


def build_scheduler(optimizer: torch.optim.Optimizer, spec: SchedulerSpec,
                    max_epochs: int) -> torch.optim.lr_scheduler.LRScheduler:
    if spec.name == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(
            optimizer, milestones=milestone_epochs(spec, max_epochs), gamma=spec.gamma)
    if spec.name == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda epoch: 0.5 * (1 + math.cos(math.pi * epoch / max_epochs)))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)
