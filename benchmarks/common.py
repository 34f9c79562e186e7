"""Shared by the benchmark scripts: the measured model, timing and table printing."""

from __future__ import annotations

import os
import platform

import torch
from torch import nn

from ftbnn_exp.models import ftbnn_resnet
from ftbnn_exp.nn import BinaryConv2d, NonLinearitySchedule


def baseline(image_size: int = 224, num_classes: int = 1000) -> nn.Module:
    """FTBNN-18 baseline: ReLU at stage ends, FPReLU elsewhere (Table 3's last BNN row)."""
    return ftbnn_resnet(NonLinearitySchedule("relu", "fprelu"), 18, num_classes=num_classes,
                        image_size=image_size)


def machine() -> str:
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads")


def verdict(ratio: float, target: float, higher_is_better: bool) -> str:
    met = ratio >= target if higher_is_better else ratio <= target
    sign = "≥" if higher_is_better else "≤"
    return f"{ratio:.3f}×  (target {sign} {target}×: {'met' if met else 'NOT met'})"


def trained_like(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """``model`` as training leaves it, where an untrained one would take another formula:
    BN statistics with a shift that is not a whole number (an untrained BN passes a conv
    output of exactly 0 on as 0), and no binary weight exactly 0 (initialisation draws one in
    about 2^24; stage 3's 2.4M-weight convs hold one about once in seven). A zero anywhere in
    a conv's input beside ±1, or in its weights, sends the whole conv to the general formula,
    two popcounts a word."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5, generator=generator)
            if isinstance(module, BinaryConv2d):
                module.weight.masked_fill_(module.weight == 0, 1e-6)
    return model
