"""What a report's rows measured, set against the paper's, and the rows whose number says
nothing: at chance, or trained into a huge or non-finite loss.

The paper trains every table's rows on ImageNet at 224 px for 60 epochs (§3, Appendix C;
Table 1's other methods are retrained under that one scheme here, ``conf/paper/table1.yaml``).
A run on the embedded digits (8 px) for 1 epoch reproduces the pipeline, not the numbers: the
report says so per row, and under the rank agreement when the runs are far shorter.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ftbnn_exp.artifacts import Metric
from ftbnn_exp.report.runs import Run


@dataclass(frozen=True)
class Setting:
    data: str
    image_size: int | None
    epochs: int | None

    def text(self) -> str:
        size = f", {self.image_size} px" if self.image_size else ""
        epochs = ("" if self.epochs is None else
                  f", {self.epochs} epoch{'' if self.epochs == 1 else 's'}")
        return f"{self.data}{size}{epochs}".lstrip(", ")


PAPER = Setting("ImageNet", 224, 60)
"""The paper's training of every table's rows (§3, Appendix C)."""
SHORT = 4
"""Runs under 1/SHORT of the paper's epochs get the caution under the rank agreement."""
CHANCE_MARGIN = 1.5
"""A top-1 at most this many times chance (100 / classes %) is flagged as at chance."""
HUGE_LOSS = 10
"""A plain cross-entropy above this many times ln(classes), a uniform guess's loss, is
flagged (distillation rows add their own terms and are judged by top-1 only)."""


def _kwargs(run: Run) -> Mapping[str, Any]:
    spec = run.metrics.get(Metric.MODEL_SPEC) or {}
    kwargs = spec.get("kwargs") if isinstance(spec, Mapping) else None
    return kwargs if isinstance(kwargs, Mapping) else {}


def _number(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def setting(run: Run) -> Setting:
    """Data set, input size and epochs a run trained (a multi-step stage: its own epochs)."""
    config = run.metrics.get(Metric.CONFIG) or {}
    data = config.get("data") if isinstance(config, Mapping) else None
    data = data if isinstance(data, Mapping) else {}
    name = run.metrics.get("data") or data.get("name")
    size = _number(_kwargs(run).get("image_size")) or _number(data.get("image_size"))
    return Setting(str(name) if name else "", size, _number(run.metrics.get(Metric.EPOCHS_RUN)))


def settings_text(runs: Iterable[Run]) -> str:
    """A row's setting; its seeds' distinct ones joined (seeds stopped at other epochs)."""
    return "; ".join(dict.fromkeys(setting(run).text() for run in runs))


def num_classes(run: Run) -> int | None:
    classes = _number(_kwargs(run).get("num_classes"))
    if classes:
        return classes
    config = run.metrics.get(Metric.CONFIG) or {}
    data = config.get("data") if isinstance(config, Mapping) else None
    return _number(data.get("num_classes")) if isinstance(data, Mapping) else None


def last_loss(run: Run) -> float | None:
    losses = [p[Metric.TRAIN_LOSS] for p in run.curve if Metric.TRAIN_LOSS in p]
    return float(losses[-1]) if losses else None


def flags(run: Run) -> list[str]:
    """Why ``run``'s top-1 says nothing about its method: at chance, or a loss that blew up."""
    found = []
    classes = num_classes(run)
    top1 = run.final(Metric.TEST_TOP1)
    if classes and top1 is not None and top1 <= CHANCE_MARGIN * 100 / classes:
        found.append(f"at chance (top-1 {top1:.1f} %, 1/{classes} = {100 / classes:.1f} %)")
    loss = last_loss(run)
    distilled = bool((run.metrics.get(Metric.CONFIG) or {}).get("kd"))
    if loss is not None and not math.isfinite(loss):
        found.append("train loss not finite")
    elif loss is not None and classes and not distilled and loss > HUGE_LOSS * math.log(classes):
        found.append(f"train loss {loss:.3g} at its last epoch (a uniform guess: "
                     f"{math.log(classes):.2f})")
    return found


def row_flags(runs: Iterable[Run]) -> str:
    """A row's flags, each naming its seeds when not all of them have it."""
    runs = list(runs)
    if len(runs) == 1:
        return "; ".join(flags(runs[0]))
    by_flag: dict[str, list[str]] = {}
    for run in runs:
        for flag in flags(run):
            by_flag.setdefault(flag.split(" (")[0], []).append(str(run.seed))
    return "; ".join(f"{flag} (every seed)" if len(seeds) == len(runs) else
                     f"{flag} (seed {', '.join(seeds)})" for flag, seeds in by_flag.items())


def caution(results: Mapping[str, list[Run]]) -> str | None:
    """A plain warning when the runs trained far shorter than the paper's, else None."""
    runs = [run for seeds in results.values() for run in seeds
            if setting(run).epochs is not None]  # failed before training: nothing measured
    epochs = [setting(run).epochs for run in runs]
    if not epochs or max(epochs) * SHORT > PAPER.epochs:
        return None
    ours = settings_text(runs) if len({setting(r) for r in runs}) <= 2 else "our data"
    return (f"**Caution:** these runs trained {ours}; the paper's {PAPER.text()}. At "
            f"{max(epochs)} of {PAPER.epochs} epochs on other data the rows are far from "
            "converged, so this rank agreement checks that the pipeline runs, not the paper's "
            "claims: a ρ near 0 or negative is expected and means nothing.")
