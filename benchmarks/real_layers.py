"""``make bench-deploy``, part 2 (with :mod:`benchmarks.ceiling`): every real-valued layer of a
fused network against this CPU's fp32 ceiling, at 1 thread (issue 37, item 2).

The ceiling is a register-resident loop of fp32 fused multiply-adds on independent
accumulators, the widest vector loop the CPU has (``deploy/kernels/ceiling.cpp``,
:func:`ftbnn_exp.deploy.rate.fma_rate`): the multiply-adds per second no fp32 layer can beat.

Each real-valued part runs as the fused runner calls it, with the input one forward pass gave
it and at its thread count (:class:`InputRecorder` around the runner's stem, each real shortcut
and the head): the part whole (``deploy/fast.py``'s :class:`~ftbnn_exp.deploy.fast.ExactPart`
the way it kept: layout, form, bands; the stem's max-pool in NHWC), then each of its layers
alone on the input that call gave it (caught by a hook: the layout is the one the network
used). Multiply-adds are torch's flop
counter's (``FlopCounterMode``: two flops per multiply-add of a conv or a linear layer); BN,
pooling and ReLU have none and are timed only. Every round samples the ceiling beside each
row, as the binary rows do; the goal, ≥ 60 % of the ceiling for the stem and each real
shortcut, is judged on ``best`` (the row's best round over the best ceiling sample beside it).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from ftbnn_exp.deploy import fast
from ftbnn_exp.deploy.rate import calls_for, fma_rate
from ftbnn_exp.deploy.timing import Spread
from ftbnn_exp.timing import seconds_per_call

GOAL = 0.6
"""Issue 37: the stem and the real shortcuts at ≥ 60 % of the fp32 FMA ceiling."""


class InputRecorder:
    """A real-valued part of a fused runner that keeps the input and the thread count of
    each call (:class:`~ftbnn_exp.deploy.fast.ExactPart`'s ``(x, threads)``)."""

    def __init__(self, run: Callable[[Tensor, int | None], Tensor]) -> None:
        self.run = run
        self.inputs: list[tuple[Tensor, int | None]] = []

    def __call__(self, x: Tensor, threads: int | None = None) -> Tensor:
        self.inputs.append((x, threads))
        return self.run(x, threads)


def record_parts(runner: fast.FusedNetwork, labels: list[str]) -> dict[str, InputRecorder]:
    """Wrap the runner's stem, real shortcuts (named by their unit's ``labels``) and head in
    recorders; the runner calls them as before."""
    runner.stem = stem = InputRecorder(runner.stem)
    parts = {"stem": stem}
    for i, (label, shortcut) in enumerate(zip(labels, runner.shortcuts, strict=True)):
        if callable(shortcut):
            runner.shortcuts[i] = parts[f"{label} shortcut"] = InputRecorder(shortcut)
    runner.head = parts["head"] = InputRecorder(runner.head)
    return parts


@dataclass
class RealLayer:
    """One timed row: a part's whole call (``layer`` empty) or one layer of it."""

    part: str
    layer: str
    run: Callable[[], object]
    macs: int
    shape: str
    exact: bool = True
    """False for the opt-in bf16 stem, timed beside the exact one (not the reference's bits)."""
    samples: dict[str, list[float]] = field(
        default_factory=lambda: {"ceiling": [], "seconds": []})

    @property
    def in_goal(self) -> bool:
        """The stem and the real shortcuts with multiply-adds (a 1×1 conv; a pooling one has
        nothing for the ceiling to bound), whole; the head is not in the goal."""
        return not self.layer and self.part != "head" and self.macs > 0 and self.exact


def macs_of(run: Callable[[], object]) -> int:
    """Multiply-adds of one call, by torch's flop counter (2 flops per multiply-add)."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        run()
    return counter.get_total_flops() // 2


def layout(x: Tensor) -> str:
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(
            memory_format=torch.channels_last):
        return "NHWC"
    return "NCHW" if x.dim() == 4 else ""


def shape_text(x: Tensor, y: Tensor) -> str:
    """``3×224×224 → 64×112×112 NCHW``: a batch-1 call's input and output, the input's
    layout."""
    return (f"{'×'.join(map(str, x.shape[1:]))} → {'×'.join(map(str, y.shape[1:]))} "
            f"{layout(x)}").rstrip()


def leaf_calls(model: nn.Module, run: Callable[[], object]) -> list[tuple[nn.Module, Tensor]]:
    """The leaf modules of ``model`` one call of ``run`` calls, in order, each with its input."""
    calls: list[tuple[nn.Module, Tensor]] = []
    handles = [module.register_forward_pre_hook(
        lambda module, args: calls.append((module, args[0])))
        for module in model.modules() if next(module.children(), None) is None]
    try:
        with torch.no_grad():
            run()
    finally:
        for handle in handles:
            handle.remove()
    return calls


def part_rows(part: str, recorder: InputRecorder, model: nn.Module,
              names: dict[nn.Module, str]) -> list[RealLayer]:
    """One part's whole call on its recorded input, then each of its layers alone."""
    x, threads = recorder.inputs[0]

    def whole() -> Tensor:
        return recorder.run(x, threads)

    with torch.no_grad():
        rows = [RealLayer(part, "", whole, macs_of(whole), shape_text(x, whole()))]
    # a faster exact form of the part (the stem pooled first) runs copies of its layers
    forms = [c for c in (getattr(recorder.run, "faster", None),)
             if isinstance(c, nn.Module) and c not in names]
    names = {**names, **{m: f"{type(c).__name__}.{n}" for c in forms
                         for n, m in c.named_modules() if n}}
    for module, given in leaf_calls(nn.ModuleList([model, *forms]), whole):
        def alone(module: nn.Module = module, given: Tensor = given) -> Tensor:
            return module(given)

        with torch.no_grad():
            out = alone()
        rows.append(RealLayer(part, f"{names[module]} {type(module).__name__}", alone,
                              macs_of(alone), shape_text(given, out)))
    return rows


def bf16_stem_row(layers: nn.Module, x: Tensor, threads: int | None) -> RealLayer:
    """The opt-in bf16 stem (``deploy verify --stem bf16``) on the exact stem's input and
    thread count: what it buys on this CPU (without native bf16,
    :func:`~ftbnn_exp.deploy.fast.native_bf16`, it costs)."""
    run = fast.stem(layers, "bf16")

    def whole() -> Tensor:
        return run(x, threads)

    with torch.no_grad():
        return RealLayer("stem", "(bf16 autocast, opt-in, inexact)", whole, macs_of(whole),
                         shape_text(x, whole()), exact=False)


def real_layers(runner: fast.FusedNetwork, parts: dict[str, InputRecorder],
                inference: nn.Module, stem_layers: nn.Module) -> list[RealLayer]:
    """Every recorded part's rows (after one forward pass of ``runner``), the bf16 stem's
    after the stem's."""
    names = fast.block_names(inference)
    rows = []
    for part, recorder in parts.items():
        rows += part_rows(part, recorder, inference, names)
        if part == "stem":
            rows.append(bf16_stem_row(stem_layers, *recorder.inputs[0]))
    return rows


def measure(rows: list[RealLayer], path: str, rounds: int) -> None:
    """Each round: per row, a ceiling sample, then the row's time per call."""
    calls = [calls_for(row.run) for row in rows]
    with torch.no_grad():
        for _ in range(rounds):
            for row, n in zip(rows, calls, strict=True):
                row.samples["ceiling"].append(fma_rate(path))
                row.samples["seconds"].append(seconds_per_call(row.run, n))


def fractions(row: RealLayer) -> list[float]:
    """Per round, the row's multiply-adds per second over the ceiling sampled beside it."""
    return [row.macs / s / c
            for s, c in zip(row.samples["seconds"], row.samples["ceiling"], strict=True)]


def best(row: RealLayer) -> float:
    """The row's best round over the best ceiling sample beside it."""
    return row.macs / min(row.samples["seconds"]) / max(row.samples["ceiling"])


def row_line(row: RealLayer) -> str:
    name = row.part if not row.layer else f"  {row.layer}"
    ms = 1e3 * statistics.median(row.samples["seconds"])
    if not row.macs:
        return f"  {name:34s} {row.shape:34s} {'':>7s} {ms:7.3f} {'(no multiply-adds)':>26s}"
    low, mid, high = Spread.of(fractions(row))
    rate = row.macs / min(row.samples["seconds"])
    line = (f"  {name:34s} {row.shape:34s} {row.macs / 1e6:7.2f} {ms:7.3f} {rate / 1e9:7.1f} "
            f"{100 * best(row):4.0f}% {100 * low:3.0f}/{100 * mid:3.0f}/{100 * high:3.0f} %")
    if row.in_goal:
        line += "  met" if best(row) >= GOAL else f"  {100 * (GOAL - best(row)):.0f} points short"
    return line


def report(name: str, rows: list[RealLayer], path: str) -> None:
    """One line per part (whole) and per layer of it; then the parts of the goal together."""
    ceiling = statistics.median(max(row.samples["ceiling"]) for row in rows)
    print(f"{name}: real-valued layers (fp32, PyTorch as the fused runner calls them); fp32 "
          f"ceiling ({path} FMA loop) beside each, best of its samples: median "
          f"{ceiling / 1e9:.1f} GMAC/s")
    print(f"  {'part / layer':34s} {'input → output, input layout':34s} {'MMACs':>7s} "
          f"{'ms':>7s} {'GMAC/s':>7s} {'best':>5s} {'per round':>13s}  goal: stem and "
          f"shortcuts ≥ {100 * GOAL:.0f} % (best)")
    for row in rows:
        print(row_line(row))
    for bf16 in (row for row in rows if not row.exact):
        exact = next(row for row in rows if row.part == bf16.part and not row.layer)
        native = "has" if fast.native_bf16() else "has no"
        print(f"  the bf16 stem (`--stem bf16`, opt-in, not bit-exact): this CPU {native} "
              f"native bf16 (AVX-512 BF16 / AMX); it takes "
              f"{min(bf16.samples['seconds']) / min(exact.samples['seconds']):.2f}× the exact "
              f"stem's time (best rounds)")
    goal = [row for row in rows if row.in_goal]
    macs = sum(row.macs for row in goal)
    seconds = sum(min(row.samples["seconds"]) for row in goal)
    print(f"  stem and shortcuts together: {macs / 1e6:.1f} MMACs in {1e3 * seconds:.3f} ms "
          f"(best rounds), {macs / seconds / 1e9:.1f} GMAC/s = "
          f"{100 * macs / seconds / ceiling:.0f} % of the median ceiling")

