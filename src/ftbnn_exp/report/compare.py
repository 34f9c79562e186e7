"""Runs side by side: the config keys they differ in, and their results in columns.

A comparison answers "what did I change, and what did it do": the configs are diffed key by
key (Hydra's ``.hydra/config.yaml`` of each run, read as data and not resolved, so a value
shows as it was given, ``${...}`` included) and only the keys that differ are shown; below
them each run's scores, epochs, complexity (counted as Section 3.2's FLOPs, BOPs and budget)
and wall time, one column per run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ftbnn_exp.artifacts import Metric
from ftbnn_exp.configs import config_diff
from ftbnn_exp.report.runs import Run, read_config


def config_source(runs: list[Run]) -> tuple[str, list[dict[str, Any]]]:
    """Each run's config and where it came from: ``.hydra/config.yaml`` when every run has
    one, else every run's resolved config in ``metrics.json`` (one source for all: an
    interpolation beside its resolved value would show as a difference)."""
    saved = [read_config(run.path) for run in runs]
    if all(config is not None for config in saved):
        return ".hydra/config.yaml as saved, not resolved", saved
    return ("metrics.json's resolved config: a run folder has no .hydra/config.yaml",
            [run.metrics.get(Metric.CONFIG) or {} for run in runs])


def text(value: Any) -> str:
    """A config value as YAML writes it (``null``, ``true``, ``[0.9, 0.999]``), a string as
    itself."""
    return value if isinstance(value, str) else json.dumps(value, default=str)


def labels(paths: list[Path]) -> list[str]:
    """The shortest trailing parts of the paths that tell them apart (``rA``; ``a/seed1`` and
    ``b/seed1``), the whole path where nothing shorter does."""
    parts = [path.resolve().parts for path in paths]
    for depth in range(1, max(len(p) for p in parts) + 1):
        names = ["/".join(p[-depth:]) for p in parts]
        if len(set(names)) == len(names):
            return names
    return [str(path) for path in paths]


def _number(value: Any, form: str = "{:.2f}") -> str:
    return form.format(value) if isinstance(value, int | float) else ""


def _status(run: Run) -> str:
    epoch = run.metrics.get("diverged_epoch")
    return f"{run.status} (epoch {epoch})" if run.status == "diverged" else run.status


def _best_val(run: Run) -> str:
    """The best validation top-1 and its epoch, counted from 1 as the curves count it."""
    best = run.metrics.get(Metric.BEST) or {}
    value, epoch = best.get(Metric.VAL_TOP1), best.get("epoch")
    if not isinstance(value, int | float):
        return ""
    return f"{value:.2f}" + (f" (epoch {epoch + 1})" if isinstance(epoch, int) else "")


def wall_time(run: Run) -> str:
    """``wall_seconds`` of ``metrics.json`` (training and test, resumed runs' time included)
    as ``42.0 s``, ``3 min 05 s`` or ``2 h 07 min``; empty where the run did not record it."""
    seconds = run.metrics.get(Metric.WALL_SECONDS)
    if not isinstance(seconds, int | float):
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min {int(seconds % 60):02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


RESULTS: tuple[tuple[str, Callable[[Run], str]], ...] = (
    ("status", _status),
    ("test top-1 (%)", lambda r: _number(r.final(Metric.TEST_TOP1))),
    ("test top-5 (%)", lambda r: _number(r.final(Metric.TEST_TOP5))),
    ("best val top-1 (%)", _best_val),
    ("epochs run", lambda r: _number(r.metrics.get(Metric.EPOCHS_RUN), "{}")),
    ("wall time", wall_time),
)
"""The rows of a run's results: label and cell."""

COMPLEXITY = (("params", "Params (M)"), ("flops", "FLOPs (M)"), ("bops", "BOPs (M)"),
              ("budget", "budget: FLOPs + BOPs/64 (M)"))
"""Complexity keys of ``metrics.json`` and their labels (Section 3.2, Fig. 3 right)."""
SIZES = ((Metric.COMPLEXITY, "its data"), (Metric.COMPLEXITY_IMAGENET, "224 px, 1000 classes"))
"""Where the run counted its complexity: at its own input size, and at ImageNet's."""


def complexity(run: Run, record: str, key: str) -> str:
    counted = run.metrics.get(record) or {}
    value = counted.get(key) if isinstance(counted, dict) else None
    return _number(value / 1e6) if isinstance(value, int | float) else ""


def result_rows(runs: list[Run]) -> list[list[str]]:
    """:data:`RESULTS` then the complexity at both sizes, a column per run; a row no run
    recorded (wall time of an older run, complexity of a run that failed early) is left out."""
    rows = [[label, *(cell(run) for run in runs)] for label, cell in RESULTS]
    rows += [[f"{label} on {size}", *(complexity(run, record, key) for run in runs)]
             for record, size in SIZES for key, label in COMPLEXITY]
    return [row for row in rows if any(row[1:])]


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    return "\n".join([line(header), "|" + "---|" * len(header), *map(line, rows)])


def compare_runs(runs: list[Run]) -> str:
    """Two or more runs side by side: which runs, the config keys that differ with each run's
    value, then their results."""
    names = labels([run.path for run in runs])
    source, configs = config_source(runs)
    diff = config_diff(configs)
    head = [["folder", *(str(run.path) for run in runs)],
            ["run name", *(str(run.metrics.get("run_name", "")) for run in runs)]]
    changed = (markdown_table(["key", *names], [[key, *map(text, values)]
                                                 for key, values in diff.items()])
               if diff else "No key differs.")
    return "\n\n".join([
        f"# {len(runs)} runs side by side", markdown_table(["", *names], head),
        f"## Config keys that differ ({len(diff)}; {source})", changed,
        "## Results (test: the final epoch's weights; epochs counted from 1)",
        markdown_table(["", *names], result_rows(runs))]) + "\n"
