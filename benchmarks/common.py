"""Shared by the benchmark scripts: the measured model, timing and table printing."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from ftbnn_exp.models import ftbnn_resnet
from ftbnn_exp.nn import NonLinearitySchedule


def baseline(image_size: int = 224, num_classes: int = 1000) -> nn.Module:
    """FTBNN-18 baseline: ReLU at stage ends, FPReLU elsewhere (Table 3's last BNN row)."""
    return ftbnn_resnet(NonLinearitySchedule("relu", "fprelu"), 18, num_classes=num_classes,
                        image_size=image_size)


def machine() -> str:
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads")


def median_seconds(step: Callable[[], object], repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def verdict(ratio: float, target: float, higher_is_better: bool) -> str:
    met = ratio >= target if higher_is_better else ratio <= target
    sign = "≥" if higher_is_better else "≤"
    return f"{ratio:.3f}×  (target {sign} {target}×: {'met' if met else 'NOT met'})"
