"""Where an inference runner's time goes, by layer type: one profiled run's top-level events
(torch.profiler), summed into the parts of a binary network.

The fused runner labels its own steps (``record_function``: stem, binary convs with their
fused output steps, shortcuts, pooling and FC); the rest is classified by ATen operator, so
the same breakdown holds for a user's own model on any runner (export, kernels, PyTorch).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator

import torch
from torch import Tensor
from torch.profiler import ProfilerActivity, profile

PARTS = ("stem", "binary convs", "packing", "output steps", "real convs", "shortcuts",
         "pooling + fc", "pooling", "fc", "other")
LABELS = {"ftbnn::stem": "stem", "ftbnn::bconv": "binary convs", "ftbnn::pack": "packing",
          "ftbnn::shortcut": "shortcuts", "ftbnn::head": "pooling + fc"}
_OPS = (
    ("real convs", ("conv", "convolution")),
    ("pooling", ("pool",)),
    ("fc", ("linear", "addmm", "matmul", "flatten")),
    ("output steps", ("batch_norm", "mul", "add", "where", "relu", "prelu", "sign", "clamp",
                      "sub", "div", "gt", "lt", "to", "copy", "contiguous")),
)


def part_of(name: str) -> str:
    """The part of an event: our label, or the ATen operator's kind."""
    if name in LABELS:
        return LABELS[name]
    op = name.removeprefix("aten::")
    for part, keys in _OPS:
        if any(key in op for key in keys):
            return part
    return "other"


@contextlib.contextmanager
def _kineto_quiet() -> Iterator[None]:
    """Kineto, the profiler's C++ backend, prints its start, stop and GPU probing on stderr
    whatever its log level; the profiled runs already ran once outside this."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def breakdown(runner: Callable[[Tensor], Tensor], x: Tensor, repeats: int = 10
              ) -> dict[str, float]:
    """Milliseconds per run in each part (the parts that took time), over ``repeats``
    profiled runs after one warm-up (profiled runs take longer than unprofiled ones: the
    parts add up to the profiled time, which :func:`describe` states)."""
    with torch.no_grad():
        runner(x)
        with _kineto_quiet(), profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(repeats):
                runner(x)
    totals = dict.fromkeys(PARTS, 0.0)
    for event in prof.events():
        if event.cpu_parent is None:  # top level: a label or an op outside any label
            totals[part_of(event.name)] += event.cpu_time_total / 1e3 / repeats
    return {part: ms for part, ms in totals.items() if ms > 0}


def describe(parts: dict[str, float]) -> str:
    """The parts with their shares of the profiled run's total, which is stated: profiling
    adds its own overhead, so it is longer than an unprofiled median."""
    total = sum(parts.values())
    return f"profiled {total:.2f} ms/run: " + ", ".join(
        f"{part} {ms:.2f} ms ({100 * ms / total:.0f} %)"
        for part, ms in sorted(parts.items(), key=lambda item: -item[1]))
